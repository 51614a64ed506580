//! The lab: test doubles that speak the real protocols over loopback (the
//! register simulator, the STS simulator, the Beskedfordeler emulator, the
//! fault proxy), test certificates and the data generator. Not the product.

pub mod certs;
pub mod emulator;
pub mod frontdoor;
pub mod generate;
pub mod proxy;
pub mod simulate;
pub mod sts;
