//! `les-bridge`: a WebSocket <-> TCP relay that lets browsers reach LES servers.
//!
//! Placeholder, filled by its owner.
