//! The NemSMS Register over OIOREST: the assumed wire format ([`wire`]) and
//! the mTLS client ([`fetch`]). Knows nothing of the configuration file or
//! the state directory: it gets a `RegisterConfig` and a temp directory.

pub mod fetch;
pub mod wire;
