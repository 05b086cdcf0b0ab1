//! RLPx, the encrypted transport under devp2p: the ECIES-based EIP-8 handshake that
//! authenticates both static node keys and agrees on session secrets, and the frame codec
//! that encrypts and MACs every message after it.
//!
//! Everything is sans-IO: the handshake types take and return whole packets (with
//! [`handshake::handshake_packet_len`] to find packet boundaries in a byte stream), the
//! frame codec takes bytes in whatever pieces they arrive and hands back frame data.
//!
//! Order of use on a connection:
//! 1. dialer: [`Initiator::auth_packet`] → write; read the ack → [`Initiator::read_ack`];
//!    listener: read the auth → [`Recipient::read_auth`] → [`Recipient::ack_packet`] →
//!    write → [`Recipient::finish`].
//! 2. both: [`FrameCodec::new`] with the resulting [`Secrets`]; then
//!    [`FrameCodec::write_frame`] for outgoing frame data and
//!    [`FrameCodec::feed`]/[`FrameCodec::next_frame`] for incoming bytes.

pub mod ecies;
pub mod frame;
pub mod handshake;

pub use ecies::EciesError;
pub use frame::{FrameCodec, FrameError, FrameReader, FrameWriter};
pub use handshake::{
    HandshakeError, Initiator, MacState, Recipient, Secrets, ack_packet_len, handshake_packet_len,
};
