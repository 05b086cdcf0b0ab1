//! `lesd`: a LES server in front of any Ethereum JSON-RPC node.
//!
//! Not built yet: this member exists so the workspace has the layout of the design
//! (`../shared/design.md` §2). The lesd/les-bridge issue fills it on top of [`les`].

pub use les;
