//! Support for the tests of lesd's service model, beside [`crate::common`] (which the client
//! crate's tests share too, so this stays out of it: it needs lesd's own dev-dependencies):
//! the PaymentChannel contract on a test anvil ([`channel`]) and a lespay/1 client
//! ([`client`]). A test binary includes it with
//! `#[path = "common/pay/mod.rs"] mod pay_support;` after `mod common;`.
#![allow(dead_code)] // each test binary uses its own subset

pub mod channel;
pub mod client;
