//! `lesd`: a LES server in front of any Ethereum JSON-RPC node.
//!
//! The protocol lives in [`les`]; this crate is its tokio driver and its data source:
//! - [`upstream`]: the JSON-RPC backend. Every header is rebuilt from the upstream's JSON
//!   and must hash to the upstream's block hash; bodies and receipts are checked against
//!   their header's roots before they are served.
//! - [`store`]: the redb cache of headers and receipts under `--datadir`.
//! - [`serve`]: answers each LES request from the upstream, with its real serving cost.
//! - [`follow`]: follows the upstream's head and signs one announcement per new head.
//! - [`node`]: the TCP (and WebSocket) listener and one task per client session.
//! - [`queue`]: the serving queue shared by the sessions: how many requests are served at
//!   once, paying clients' first.
//! - [`metrics`]: Prometheus metrics.
//! - [`http`]: the HTTP accept loop of the metrics and admin endpoints.
//! - [`pay`]: the service model: the client pool's driver and `lespay/1` ([`pay::service`]),
//!   the payment ledger, payment receivers, channel reads, cheque redemption, and the admin
//!   JSON-RPC endpoint ([`pay::admin`]).
//! - [`daemon`]: all of the above started and stopped as one (the `lesd` binary, tests).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod daemon;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod node;
pub mod pay;
pub mod queue;
pub mod serve;
pub mod store;
pub mod upstream;

pub use les;
