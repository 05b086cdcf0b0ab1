//! The browser drivers of the client core (wasm32 only): [`WebRuntime`] (`performance.now`,
//! `setTimeout`, `spawn_local`), [`WebSocketTransport`] (WebSockets to les-bridges),
//! [`IdbStore`] (IndexedDB), and the wasm-bindgen exports the npm package's `index.js` wraps
//! ([`bindings`]).

pub mod bindings;
pub mod idb;
pub mod runtime;
pub mod websocket;

pub use bindings::{AnyStore, WasmClient};
pub use idb::{IdbStore, storage_estimate};
pub use runtime::WebRuntime;
pub use websocket::{WebSocketConnection, WebSocketTransport};
