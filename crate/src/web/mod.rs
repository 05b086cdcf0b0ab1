//! The browser drivers of the client core (wasm32 only): [`WebRuntime`] (`performance.now`,
//! `setTimeout`, `spawn_local`), [`WebSocketTransport`] (WebSockets to les-bridges),
//! [`IdbStore`] (IndexedDB), [`WalletOpener`] (an EIP-1193 wallet that funds payment
//! channels), and the wasm-bindgen exports the npm package's `index.js` wraps ([`bindings`]).

pub mod bindings;
pub mod idb;
pub mod runtime;
pub mod wallet;
pub mod websocket;

pub use bindings::{AnyStore, WasmClient};
pub use idb::{IdbStore, storage_estimate};
pub use runtime::WebRuntime;
pub use wallet::WalletOpener;
pub use websocket::{WebSocketConnection, WebSocketTransport};
