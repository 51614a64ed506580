//! Beskedfordeler (SF1462 over AMQP): the publisher, the messages around
//! the envelope, STS tokens, and AliveBesked.

pub mod alive;
pub mod besked;
pub mod publish;
pub mod sts;
