//! `ulc`: the browser Ultra Light Client (client core, WebSocket and IndexedDB drivers,
//! EIP-1193 provider).
//!
//! Not built yet: this member exists so the workspace has the layout of the design
//! (`../shared/design.md` §2). The browser-client issue fills it on top of [`les`].

pub use les;
