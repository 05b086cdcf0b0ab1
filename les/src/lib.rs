//! `les`: the sans-IO core of the Light Ethereum Subprotocol, shared by the browser client
//! (`ulc`), the server (`lesd`) and the tests.
//!
//! It has no sockets, no async runtime and no clock of its own: drivers feed it bytes and
//! [`time::Timestamp`]s and carry out what it returns, in the style of `quinn-proto` and
//! `rustls`. It compiles for native targets and for `wasm32-unknown-unknown`.
//!
//! Layers, bottom up:
//! - [`crypto`]: node keys, node IDs, recoverable signatures, ECDH, enode URLs.
//! - [`rlpx`]: the EIP-8 handshake (ECIES) and the encrypted, MAC'd frame codec.
//! - [`p2p`]: the devp2p base protocol: Hello, Disconnect, Ping/Pong, capability
//!   negotiation and message-ID offsets, snappy.
//! - [`msg`]: every LES (les/2, les/3, les/4) message as a typed value with strict RLP
//!   encoding and decoding; Status key/value lists; EIP-2124 fork IDs.
//! - [`chain`]: headers, bodies, transactions and receipts (alloy-consensus types) and their
//!   verification against roots; Merkle-Patricia proof checks (alloy-trie).
//! - [`announce`]: signing and verifying head announcements.
//! - [`ulc`]: the Ultra Light Client quorum rule that accepts a chain head.
//! - [`flow`]: LES flow control, server-side accounting and the client-side estimate.
//! - [`session`]: a whole peer connection as one state machine.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod announce;
pub mod chain;
pub mod crypto;
pub mod flow;
pub mod msg;
pub mod p2p;
pub mod pay;
pub mod rlpx;
pub mod session;
pub mod time;
pub mod ulc;
