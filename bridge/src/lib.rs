//! `les-bridge`: a WebSocket <-> TCP relay that lets browsers reach LES servers.
//!
//! Not built yet: this member exists so the workspace has the layout of the design
//! (`../shared/design.md` §2). The lesd/les-bridge issue fills it.
