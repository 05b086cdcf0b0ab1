//! `ulc`: an Ethereum Ultra Light Client for the browser.
//!
//! The client connects to a configured set of LES servers (through WebSocket bridges in a
//! browser), accepts a chain head once the ULC quorum of trusted servers has signed it, and
//! answers a dapp's EIP-1193 requests only with data verified against that head.
//!
//! Layers:
//! - [`config`]: what `createProvider` is given, checked.
//! - [`transport`], [`store`], [`runtime`]: the environment, as traits. The same core runs
//!   natively (tokio, TCP or WebSocket, memory store; `native`) and in the browser
//!   (WebSocket, IndexedDB, `setTimeout`; `web`, wasm32 only).
//! - [`client`]: the core: one LES session per server, the ULC quorum, verified headers,
//!   bodies, receipts, proofs and code, server choice by flow-control budget and value.
//! - [`chain`]: the interface the provider is written against.
//! - [`evm`]: revm over lazily fetched, proven state (`eth_call`, `eth_estimateGas`).
//! - [`provider`]: EIP-1193 / EIP-1474 request handling over [`chain::Chain`].
//! - [`pay`]: the service model's client side: value-based choice of servers to pay, the
//!   pay-as-you-go policy, payment channels and their cheques (`lespay/1`).
#![deny(missing_docs)]

pub mod chain;
pub mod client;
pub mod config;
pub mod evm;
pub mod pay;
pub mod provider;
pub mod runtime;
pub mod store;
pub mod transport;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use les;
