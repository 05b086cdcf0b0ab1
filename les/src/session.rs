//! A whole LES peer connection as one sans-IO state machine: the RLPx handshake, the devp2p
//! Hello exchange and capability negotiation, the LES Status exchange, and then messages,
//! with flow control on both sides and signed-announcement checks on the client side.
//!
//! The driver owns the socket and the clock. It feeds every received byte to
//! [`Session::handle_input`], writes out whatever [`Session::poll_transmit`] returns, acts
//! on [`Session::poll_event`], and calls [`Session::handle_timeout`] when the time from
//! [`Session::poll_timeout`] has come. The same type serves both ends: a light client
//! ([`Role::Client`]) dials a server and requests data; a server ([`Role::Server`]) accepts
//! clients, accounts for their requests and answers them.
//!
//! What the session decides by itself (the protocol's rules, so every driver gets them):
//! - timeouts: 5 s for the RLPx handshake, 30 s for Hello, 5 s for Status, and after that a
//!   Ping every 15 s and disconnection of a peer silent for 30 s (geth's numbers);
//! - the Hello identity check, capability negotiation (LES and any further capability the
//!   driver registers, such as a payment protocol), snappy from p2p v5 on;
//! - Status validation for its role (research §3.3);
//! - client side: the server's buffer estimate (requests refused locally when they would
//!   overrun it), Stop/Resume, parameter-update announcements, and the signature of every
//!   head announcement when signed ones were asked for (a bad one disconnects, as geth);
//! - server side: the client's buffer, requests outside the LES limits or sent while frozen
//!   dropped without reply, an overrun answered by Stop (les/3+) or disconnection (les/2),
//!   Resume once the buffer has recharged, the reply buffer value, announcements in the
//!   form the client asked for.

use crate::announce::{AnnounceError, AnnouncedHead, SignedAnnouncement};
use crate::crypto::{NodeId, NodeKey, NodePublicKey, node_id, random_bytes};
use crate::flow::{
    AcceptError, ClientBuffer, CostTable, FlowParams, RequestTicket, SendDelay,
    ServerBufferEstimate,
};
use crate::msg::{
    Announce, AnnounceType, ForkSchedule, LesMessage, LesVersion, LocalStatus, MAX_MESSAGE_SIZE,
    MAX_REQUEST_ERRORS, MAX_RESPONSE_ERRORS, MsgError, RemoteClient, RemoteServer, RequestCost,
    Resume, Status, StatusError,
};
use crate::p2p::{
    self, BaseMessage, BaseMessageError, Capability, CapabilitySpec, DisconnectReason,
    FrameDataError, Hello, HelloError, SharedCapability, SnappyError,
};
use crate::rlpx::{
    FrameCodec, FrameError, HandshakeError, Initiator, Recipient, ack_packet_len,
    handshake_packet_len,
};
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// Time allowed for the RLPx auth/ack exchange (geth `handshakeTimeout`).
pub const RLPX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the peer's Hello after the RLPx handshake (geth's frame read timeout).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between our Pings once established (geth `pingInterval`).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A peer silent for this long is disconnected (geth `frameReadTimeout`).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Error counters decay by one per this period (geth: one per hour).
pub const ERROR_DECAY_PERIOD: Duration = Duration::from_secs(3600);

/// The largest frame the session accepts: a LES message at its 10 MiB cap, plus its message
/// ID, plus the worst-case snappy expansion of incompressible data (`n + n/6 + 32`).
pub const MAX_FRAME_SIZE: usize = MAX_MESSAGE_SIZE + MAX_MESSAGE_SIZE / 6 + 64;

/// Bytes of handshake input buffered at most before the packet length is known and checked.
const MAX_HANDSHAKE_BUFFER: usize = 2 + 0x0400;

/// Which end of the connection the session plays.
#[derive(Debug, Clone)]
pub enum Role {
    /// A light client: dials servers, sends requests, receives announcements.
    Client(ClientConfig),
    /// A server: accepts clients, serves their requests, announces heads.
    Server(ServerConfig),
}

/// What a client asks of the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The announcements to ask for: [`AnnounceType::Signed`] for ULC-trusted servers.
    pub announce_type: AnnounceType,
    /// Whether this server is ULC-trusted (an announce-only server is accepted only then).
    pub trusted: bool,
}

/// What a server offers a client, advertised in its Status.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's current head, sent as `headHash`/`headNum`/`headTd`.
    pub head: AnnouncedHead,
    /// The flow-control parameters given to this client.
    pub flow: FlowParams,
    /// What data the server serves.
    pub offer: ServeOffer,
}

/// The serving keys of a server's Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOffer {
    /// `serveHeaders`.
    pub headers: bool,
    /// `serveChainSince`: oldest block whose bodies and receipts are served.
    pub chain_since: Option<u64>,
    /// `serveRecentChain` (les/3+): only the last N blocks of chain data.
    pub recent_chain: Option<u64>,
    /// `serveStateSince`: oldest block whose state is served.
    pub state_since: Option<u64>,
    /// `serveRecentState` (les/3+): state of the last N blocks only.
    pub recent_state: Option<u64>,
    /// `txRelay`.
    pub tx_relay: bool,
    /// `recentTxLookup` (les/4): 0 = every transaction indexed.
    pub recent_tx_lookup: u64,
}

impl ServeOffer {
    /// A server that serves everything from genesis with full state history (an archive
    /// backend), relays transactions and looks up every transaction.
    pub const ARCHIVE: Self = Self {
        headers: true,
        chain_since: Some(0),
        recent_chain: None,
        state_since: Some(0),
        recent_state: None,
        tx_relay: true,
        recent_tx_lookup: 0,
    };
}

/// Everything a session needs to start.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our static node key (RLPx identity, announcement signatures).
    pub key: NodeKey,
    /// Free-form client name sent in Hello.
    pub client_id: String,
    /// The LES versions we speak; the highest shared one is used.
    pub versions: Vec<LesVersion>,
    /// Further capabilities to negotiate beside LES; their messages surface as
    /// [`Event::CapabilityMessage`].
    pub extra_capabilities: Vec<CapabilitySpec>,
    /// Network ID (`networkId`), e.g. 1 for mainnet.
    pub network_id: u64,
    /// Genesis hash and fork schedule, for Status and the fork ID.
    pub fork_schedule: ForkSchedule,
    /// Our head number and timestamp, for our fork ID and to validate the peer's.
    pub head_number: u64,
    /// Timestamp of our head block.
    pub head_time: u64,
    /// Client or server.
    pub role: Role,
}

impl SessionConfig {
    /// A configuration speaking every LES version, with no further capability, a genesis
    /// head for the fork ID and this crate's client name; the fields are public for the rest.
    pub fn new(key: NodeKey, role: Role, network_id: u64, fork_schedule: ForkSchedule) -> Self {
        Self {
            key,
            client_id: concat!("les/v", env!("CARGO_PKG_VERSION")).to_string(),
            versions: LesVersion::ALL.to_vec(),
            extra_capabilities: Vec::new(),
            network_id,
            fork_schedule,
            head_number: 0,
            head_time: 0,
            role,
        }
    }
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiative {
    /// We did (a local call, a timeout, or a protocol violation by the peer).
    Local,
    /// The peer sent Disconnect.
    Remote,
}

/// The outcome of the handshake, delivered once with [`Event::Established`].
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's static public key, authenticated by RLPx.
    pub public_key: NodePublicKey,
    /// keccak256 of the public key.
    pub node_id: NodeId,
    /// The client name from the peer's Hello.
    pub client_id: String,
    /// The negotiated LES version.
    pub version: LesVersion,
    /// Every shared capability with its message-ID range.
    pub capabilities: Vec<SharedCapability>,
    /// The peer's Status as received.
    pub status: Status,
    /// What the Status says about the peer in our role.
    pub remote: RemotePeer,
}

/// The peer as classified from its Status.
#[derive(Debug, Clone)]
pub enum RemotePeer {
    /// We are a client; this is the server's offer.
    Server(RemoteServer),
    /// We are a server; this is the connecting peer.
    Client(RemoteClient),
}

/// What the session tells its driver.
#[derive(Debug)]
pub enum Event {
    /// Handshake, Hello and Status are done; messages may flow.
    Established(Box<PeerInfo>),
    /// (Client) a head announcement, with its verified signature when signed ones were asked
    /// for. Parameter-only updates are applied to the buffer estimate and not reported.
    Announcement {
        /// The message as received.
        announce: Announce,
        /// The head and its signature, checked against the server's node ID.
        signed: Option<SignedAnnouncement>,
    },
    /// (Client) a reply to one of our requests; its buffer value is already accounted for.
    Reply(LesMessage),
    /// (Server) a request within limits and within the client's buffer. Answer it with
    /// [`Session::reply`], passing back the ticket.
    Request {
        /// The buffer accounting for this request.
        ticket: RequestTicket,
        /// The request.
        request: LesMessage,
    },
    /// (Client) the server sent StopMsg: every outstanding request is lost.
    Stopped,
    /// (Client) the server sent ResumeMsg.
    Resumed {
        /// The buffer value it reported.
        buffer_value: u64,
    },
    /// (Server) the client was sent StopMsg: it overran its buffer, or the driver froze it
    /// ([`Session::freeze_client`]).
    ClientFrozen,
    /// (Server) the client's buffer recharged and it was sent ResumeMsg.
    ClientResumed,
    /// A message of a further negotiated capability.
    CapabilityMessage {
        /// The capability's name.
        capability: String,
        /// The code relative to the capability's offset.
        code: u64,
        /// The message data, decompressed.
        payload: Vec<u8>,
    },
    /// The connection is over; the driver closes the socket once it has written out what
    /// [`Session::poll_transmit`] still returns.
    Disconnected {
        /// The reason sent or received.
        reason: DisconnectReason,
        /// Who ended it.
        by: Initiative,
        /// What went wrong, if it ended because of an error.
        error: Option<SessionError>,
    },
}

/// A protocol failure that ends the session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The RLPx handshake failed.
    #[error("RLPx handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A frame failed its MAC or size checks.
    #[error("RLPx frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame's message ID was malformed.
    #[error("frame data: {0}")]
    FrameData(#[from] FrameDataError),
    /// Snappy decompression failed or exceeded the size cap.
    #[error("snappy: {0}")]
    Snappy(#[from] SnappyError),
    /// A devp2p base-protocol message was malformed.
    #[error("base protocol: {0}")]
    Base(#[from] BaseMessageError),
    /// Our own Hello could not be encoded (bad local configuration).
    #[error("hello: {0}")]
    Hello(#[from] HelloError),
    /// The Hello's node ID is not the key RLPx authenticated.
    #[error("hello identity check failed: {0}")]
    Identity(DisconnectReason),
    /// The peer does not speak any LES version we do.
    #[error("no shared LES version")]
    NoSharedLes,
    /// A message arrived that this phase or role does not allow.
    #[error("unexpected message id {id:#x} in phase {phase}")]
    UnexpectedMessage {
        /// The wire message ID.
        id: u64,
        /// The phase the session was in.
        phase: &'static str,
    },
    /// A LES message failed to decode.
    #[error("LES message: {0}")]
    Msg(#[from] MsgError),
    /// The peer's Status was refused.
    #[error("status: {0}")]
    Status(#[from] StatusError),
    /// A signed announcement did not verify against the server's node ID.
    #[error("announcement signature: {0}")]
    AnnouncementSignature(#[from] AnnounceError),
    /// A signed announcement was asked for and none came.
    #[error("announcement without the requested signature")]
    MissingSignature,
    /// A head announcement arrived although none were asked for.
    #[error("head announcement although announceType none was asked for")]
    UnsolicitedAnnouncement,
    /// An announced TD wider than 100 bits.
    #[error("announced total difficulty exceeds 100 bits")]
    TdTooLarge,
    /// Too many invalid or unexpected replies (geth `maxResponseErrors`).
    #[error("more than {MAX_RESPONSE_ERRORS} invalid replies")]
    TooManyResponseErrors,
    /// Too many invalid requests (geth `maxRequestErrors`).
    #[error("more than {MAX_REQUEST_ERRORS} invalid requests")]
    TooManyRequestErrors,
    /// An les/2 client overran its buffer (les/2 has no Stop/Resume).
    #[error("buffer overrun by an les/2 client")]
    BufferOverrun,
    /// The peer did not finish a phase in time.
    #[error("timed out in phase {0}")]
    Timeout(&'static str),
}

impl SessionError {
    /// The Disconnect reason geth sends for this failure.
    pub fn disconnect_reason(&self) -> DisconnectReason {
        match self {
            SessionError::Handshake(_)
            | SessionError::Frame(_)
            | SessionError::FrameData(_)
            | SessionError::Snappy(_)
            | SessionError::Base(_)
            | SessionError::UnexpectedMessage { .. } => DisconnectReason::ProtocolError,
            SessionError::Hello(e) => e.disconnect_reason(),
            SessionError::Identity(reason) => *reason,
            SessionError::NoSharedLes | SessionError::BufferOverrun => {
                DisconnectReason::UselessPeer
            }
            SessionError::Timeout(_) => DisconnectReason::ReadTimeout,
            SessionError::Msg(_)
            | SessionError::Status(_)
            | SessionError::AnnouncementSignature(_)
            | SessionError::MissingSignature
            | SessionError::UnsolicitedAnnouncement
            | SessionError::TdTooLarge
            | SessionError::TooManyResponseErrors
            | SessionError::TooManyRequestErrors => DisconnectReason::SubprotocolError,
        }
    }
}

/// Why a local call was refused; the session itself is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The session is not (or no longer) established.
    #[error("session is not established")]
    NotEstablished,
    /// The call belongs to the other role.
    #[error("this call is for the other role")]
    WrongRole,
    /// The message is not a LES request.
    #[error("not a LES request")]
    NotARequest,
    /// The message is not a LES reply.
    #[error("not a LES reply")]
    NotAReply,
    /// The request has no items or more than the LES limit.
    #[error("request outside the LES item limits")]
    OutsideLimits,
    /// The server advertises no cost for this request code.
    #[error("server gave no cost for request code {0:#x}")]
    NoCost(u64),
    /// Sending now could overrun the server's buffer.
    #[error("server buffer too low: {0:?}")]
    Budget(SendDelay),
    /// A further capability's message code outside its range, or no such capability.
    #[error("capability {0} not negotiated or code out of range")]
    Capability(String),
    /// The message could not be framed (too large).
    #[error("message too large to send")]
    TooLarge,
}

#[derive(Debug)]
enum Phase {
    InitiatorHandshake(Option<Initiator>),
    RecipientHandshake(Option<Recipient>),
    AwaitHello,
    AwaitStatus,
    Established,
    Closed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::InitiatorHandshake(_) | Phase::RecipientHandshake(_) => "rlpx-handshake",
            Phase::AwaitHello => "hello",
            Phase::AwaitStatus => "status",
            Phase::Established => "established",
            Phase::Closed => "closed",
        }
    }
}

/// Counts peer errors and forgives one per [`ERROR_DECAY_PERIOD`], as geth does.
#[derive(Debug, Clone, Copy)]
struct DecayingCounter {
    count: u64,
    since: Timestamp,
}

impl DecayingCounter {
    fn new(now: Timestamp) -> Self {
        Self { count: 0, since: now }
    }

    /// Adds one error; returns the count after decay.
    fn add(&mut self, now: Timestamp) -> u64 {
        let periods =
            now.saturating_duration_since(self.since).as_secs() / ERROR_DECAY_PERIOD.as_secs();
        if periods > 0 {
            self.count = self.count.saturating_sub(periods);
            self.since = now;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

#[derive(Debug)]
enum Side {
    Client { estimate: ServerBufferEstimate, response_errors: DecayingCounter },
    Server { buffer: ClientBuffer, announce_type: AnnounceType, request_errors: DecayingCounter },
}

/// One peer connection; see the module documentation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    handshake_buffer: Vec<u8>,
    codec: Option<FrameCodec>,
    remote_public: Option<NodePublicKey>,
    remote_hello: Option<Hello>,
    snappy: bool,
    shared: Vec<SharedCapability>,
    les: Option<(usize, LesVersion)>,
    side: Option<Side>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    deadline: Option<Timestamp>,
    last_received: Timestamp,
    next_ping: Option<Timestamp>,
}

impl Session {
    /// Starts a session that dials `remote` (the server's enode public key). The auth packet
    /// is ready in [`Session::poll_transmit`] at once.
    pub fn connect(
        config: SessionConfig,
        remote: NodePublicKey,
        now: Timestamp,
    ) -> Result<Self, SessionError> {
        let mut initiator = Initiator::new(config.key.clone(), remote)?;
        let auth = initiator.auth_packet()?;
        let mut session = Self::new(config, Phase::InitiatorHandshake(Some(initiator)), now);
        session.transmit.push_back(auth);
        Ok(session)
    }

    /// Starts a session for a connection a peer opened to us; it waits for the auth packet.
    pub fn accept(config: SessionConfig, now: Timestamp) -> Result<Self, SessionError> {
        let recipient = Recipient::new(config.key.clone())?;
        Ok(Self::new(config, Phase::RecipientHandshake(Some(recipient)), now))
    }

    fn new(config: SessionConfig, phase: Phase, now: Timestamp) -> Self {
        Self {
            config,
            phase,
            handshake_buffer: Vec::new(),
            codec: None,
            remote_public: None,
            remote_hello: None,
            snappy: false,
            shared: Vec::new(),
            les: None,
            side: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            deadline: Some(now.saturating_add(RLPX_HANDSHAKE_TIMEOUT)),
            last_received: now,
            next_ping: None,
        }
    }

    /// Whether Status has been exchanged and the connection is usable.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The peer's public key, once the RLPx handshake has authenticated it.
    pub fn remote_public_key(&self) -> Option<NodePublicKey> {
        self.remote_public
    }

    /// The negotiated LES version, once Hello has been exchanged.
    pub fn version(&self) -> Option<LesVersion> {
        self.les.map(|(_, version)| version)
    }

    /// (Client) the estimate of the server's buffer, for routing requests by budget.
    pub fn server_buffer(&self) -> Option<&ServerBufferEstimate> {
        match &self.side {
            Some(Side::Client { estimate, .. }) => Some(estimate),
            _ => None,
        }
    }

    /// (Client) the server's buffer as estimated at `now`, recharge included.
    pub fn server_buffer_estimate(&mut self, now: Timestamp) -> Option<u64> {
        match &mut self.side {
            Some(Side::Client { estimate, .. }) => Some(estimate.buffer_estimate(now)),
            _ => None,
        }
    }

    /// (Server) the client's buffer.
    pub fn client_buffer(&self) -> Option<&ClientBuffer> {
        match &self.side {
            Some(Side::Server { buffer, .. }) => Some(buffer),
            _ => None,
        }
    }

    /// The next bytes to write to the socket, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.is_closed() {
            return None;
        }
        let resume = match &self.side {
            Some(Side::Server { buffer, .. }) => buffer.resume_at(),
            _ => None,
        };
        [self.deadline, self.next_ping, resume].into_iter().flatten().min()
    }

    /// Advances timers: handshake deadlines, Pings, the read timeout, a frozen client's
    /// Resume.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.is_closed() {
            return;
        }
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            let phase = self.phase.name();
            self.fail(SessionError::Timeout(phase));
            return;
        }
        if let Some(Side::Server { buffer, .. }) = &mut self.side
            && buffer.is_frozen()
            && let Some(buffer_value) = buffer.try_resume(now)
        {
            self.send_own_les(&LesMessage::Resume(Resume { buffer_value }));
            self.events.push_back(Event::ClientResumed);
        }
        if self.next_ping.is_some_and(|at| now >= at) {
            self.send_base(&BaseMessage::Ping);
            self.next_ping = Some(now.saturating_add(PING_INTERVAL));
        }
    }

    /// Feeds bytes received from the socket.
    pub fn handle_input(&mut self, bytes: &[u8], now: Timestamp) {
        if self.is_closed() || bytes.is_empty() {
            return;
        }
        self.last_received = now;
        if self.is_established() {
            self.deadline = Some(now.saturating_add(READ_TIMEOUT));
        }
        if let Err(error) = self.consume(bytes, now) {
            self.fail(error);
        }
    }

    fn consume(&mut self, mut bytes: &[u8], now: Timestamp) -> Result<(), SessionError> {
        if self.codec.is_none() {
            let used = self.consume_handshake(bytes, now)?;
            bytes = &bytes[used..];
            if self.codec.is_none() {
                return Ok(());
            }
        }
        let frames = match self.codec.as_mut() {
            Some(codec) => codec.read_frames(bytes)?,
            None => return Ok(()),
        };
        for frame in frames {
            if self.is_closed() {
                break;
            }
            self.handle_frame(&frame, now)?;
        }
        Ok(())
    }

    /// Buffers handshake bytes until the packet is complete; returns how many bytes of
    /// `bytes` were taken (the rest are already frames).
    fn consume_handshake(&mut self, bytes: &[u8], now: Timestamp) -> Result<usize, SessionError> {
        let initiator = matches!(self.phase, Phase::InitiatorHandshake(_));
        let buffered = self.handshake_buffer.len();
        let room = MAX_HANDSHAKE_BUFFER.saturating_sub(buffered);
        let mut probe = self.handshake_buffer.clone();
        probe.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let needed =
            if initiator { ack_packet_len(&probe)? } else { handshake_packet_len(&probe)? };
        let Some(needed) = needed else {
            self.handshake_buffer = probe;
            return Ok(bytes.len().min(room));
        };
        if probe.len() < needed {
            self.handshake_buffer = probe;
            return Ok(bytes.len().min(room));
        }
        let used = needed.saturating_sub(buffered);
        probe.truncate(needed);
        self.handshake_buffer.clear();
        let secrets = match &mut self.phase {
            Phase::InitiatorHandshake(slot) => match slot.take() {
                Some(initiator) => initiator.read_ack(&probe)?,
                None => return Err(SessionError::UnexpectedMessage { id: 0, phase: "rlpx" }),
            },
            Phase::RecipientHandshake(slot) => match slot.take() {
                Some(mut recipient) => {
                    recipient.read_auth(&probe)?;
                    let ack = recipient.ack_packet()?;
                    self.transmit.push_back(ack);
                    recipient.finish()?
                }
                None => return Err(SessionError::UnexpectedMessage { id: 0, phase: "rlpx" }),
            },
            _ => return Err(SessionError::UnexpectedMessage { id: 0, phase: "rlpx" }),
        };
        self.remote_public = Some(secrets.remote_public);
        self.codec = Some(FrameCodec::with_max_frame_size(secrets, MAX_FRAME_SIZE));
        self.phase = Phase::AwaitHello;
        self.deadline = Some(now.saturating_add(HELLO_TIMEOUT));
        self.send_hello()?;
        Ok(used)
    }

    fn local_capabilities(&self) -> Vec<CapabilitySpec> {
        let les = self.config.versions.iter().map(|version| CapabilitySpec {
            name: crate::msg::CAPABILITY_NAME.to_string(),
            version: version.number(),
            message_count: version.message_count(),
        });
        les.chain(self.config.extra_capabilities.iter().cloned()).collect()
    }

    fn send_hello(&mut self) -> Result<(), SessionError> {
        let capabilities: Vec<Capability> =
            self.local_capabilities().iter().map(CapabilitySpec::capability).collect();
        let hello =
            Hello::new(self.config.client_id.clone(), capabilities, self.config.key.public_key());
        let data = hello.encode()?;
        // Hello is the one message never compressed.
        self.write_frame(p2p::HELLO_MSG, &data)?;
        Ok(())
    }

    fn handle_frame(&mut self, frame: &[u8], now: Timestamp) -> Result<(), SessionError> {
        let (id, data) = p2p::decode_frame_data(frame)?;
        if matches!(self.phase, Phase::AwaitHello) {
            return match id {
                p2p::HELLO_MSG => self.handle_hello(data, now),
                p2p::DISCONNECT_MSG => {
                    self.remote_disconnect(data);
                    Ok(())
                }
                _ => Err(SessionError::UnexpectedMessage { id, phase: "hello" }),
            };
        }
        let data = if self.snappy {
            p2p::decompress(data, MAX_MESSAGE_SIZE)?
        } else {
            if data.len() > MAX_MESSAGE_SIZE {
                return Err(SessionError::Msg(MsgError::TooLarge { size: data.len() }));
            }
            data.to_vec()
        };
        if id < p2p::BASE_PROTOCOL_LENGTH {
            return self.handle_base(id, &data);
        }
        let Some((index, code)) = p2p::resolve_message_id(&self.shared, id) else {
            return Err(SessionError::UnexpectedMessage { id, phase: self.phase.name() });
        };
        if Some(index) == self.les.map(|(index, _)| index) {
            let version = self.les.map_or(LesVersion::Les4, |(_, v)| v);
            let message = LesMessage::decode(version, code, &data)?;
            self.handle_les(id, message, data.len(), now)
        } else {
            if !self.is_established() {
                return Err(SessionError::UnexpectedMessage { id, phase: self.phase.name() });
            }
            let capability = self.shared.get(index).map(|c| c.name.clone()).unwrap_or_default();
            self.events.push_back(Event::CapabilityMessage { capability, code, payload: data });
            Ok(())
        }
    }

    fn handle_base(&mut self, id: u64, data: &[u8]) -> Result<(), SessionError> {
        match BaseMessage::decode(id, data) {
            Ok(BaseMessage::Ping) => {
                self.send_base(&BaseMessage::Pong);
                Ok(())
            }
            Ok(BaseMessage::Pong) => Ok(()),
            Ok(BaseMessage::Disconnect(_)) | Err(BaseMessageError::Disconnect(_)) => {
                self.remote_disconnect(data);
                Ok(())
            }
            Ok(BaseMessage::Hello(_)) => {
                Err(SessionError::UnexpectedMessage { id, phase: self.phase.name() })
            }
            // geth ignores unknown IDs inside the base protocol's reserved range.
            Err(BaseMessageError::UnknownId(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    fn handle_hello(&mut self, data: &[u8], now: Timestamp) -> Result<(), SessionError> {
        let hello = Hello::decode(data)?;
        let authenticated = self.remote_public.unwrap_or_default();
        hello.check_identity(&authenticated).map_err(SessionError::Identity)?;
        let shared = p2p::negotiate(&self.local_capabilities(), &hello.capabilities);
        let les = shared.iter().enumerate().find_map(|(index, capability)| {
            (capability.name == crate::msg::CAPABILITY_NAME)
                .then(|| LesVersion::from_number(capability.version).map(|v| (index, v)))
                .flatten()
        });
        let Some(les) = les else {
            return Err(SessionError::NoSharedLes);
        };
        self.snappy = p2p::uses_snappy(hello.protocol_version);
        self.shared = shared;
        self.les = Some(les);
        self.remote_hello = Some(hello);
        self.phase = Phase::AwaitStatus;
        self.deadline = Some(now.saturating_add(crate::msg::HANDSHAKE_TIMEOUT));
        let status = self.local_status_message(les.1);
        self.send_les(&LesMessage::Status(Box::new(status)))?;
        Ok(())
    }

    fn local_status(&self, version: LesVersion) -> LocalStatus<'_> {
        LocalStatus {
            version,
            network_id: self.config.network_id,
            fork_schedule: &self.config.fork_schedule,
            head_number: self.config.head_number,
            head_time: self.config.head_time,
        }
    }

    fn local_status_message(&self, version: LesVersion) -> Status {
        let mut status = self.local_status(version).status();
        match &self.config.role {
            Role::Client(client) => status.announce_type = Some(client.announce_type),
            Role::Server(server) => {
                status.head_hash = Some(server.head.hash);
                status.head_number = Some(server.head.number);
                status.head_td = Some(server.head.td);
                let offer = server.offer;
                status.serve_headers = offer.headers;
                status.serve_chain_since = offer.chain_since;
                status.serve_state_since = offer.state_since;
                status.tx_relay = offer.tx_relay;
                if version >= LesVersion::Les3 {
                    status.serve_recent_chain = offer.recent_chain;
                    status.serve_recent_state = offer.recent_state;
                }
                if version >= LesVersion::Les4 {
                    status.recent_tx_lookup = Some(offer.recent_tx_lookup);
                }
                status.buffer_limit = Some(server.flow.buffer_limit);
                status.min_recharge = Some(server.flow.min_recharge);
                status.request_costs = Some(
                    server
                        .flow
                        .costs
                        .entries()
                        .filter(|entry| version.supports(entry.code))
                        .collect(),
                );
            }
        }
        status
    }

    fn handle_les(
        &mut self,
        id: u64,
        message: LesMessage,
        size: usize,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        if matches!(self.phase, Phase::AwaitStatus) {
            let LesMessage::Status(status) = message else {
                return Err(SessionError::UnexpectedMessage { id, phase: "status" });
            };
            return self.handle_status(*status, now);
        }
        match self.config.role {
            Role::Client(_) => self.client_message(id, message, now),
            Role::Server(_) => self.server_message(id, message, size, now),
        }
    }

    fn handle_status(&mut self, status: Status, now: Timestamp) -> Result<(), SessionError> {
        let version = self.les.map_or(LesVersion::Les4, |(_, v)| v);
        let local = self.local_status(version);
        let remote = match &self.config.role {
            Role::Client(client) => {
                let server = status.validate_from_server(&local, client.trusted)?;
                let costs: CostTable = server.request_costs.iter().copied().collect();
                let params = FlowParams {
                    buffer_limit: server.buffer_limit,
                    min_recharge: server.min_recharge,
                    costs,
                };
                self.side = Some(Side::Client {
                    estimate: ServerBufferEstimate::new(params, now),
                    response_errors: DecayingCounter::new(now),
                });
                RemotePeer::Server(server)
            }
            Role::Server(server) => {
                let client = status.validate_from_client(&local)?;
                let announce_type = match client {
                    RemoteClient::LightClient { announce_type } => announce_type,
                    RemoteClient::Server => AnnounceType::None,
                };
                self.side = Some(Side::Server {
                    buffer: ClientBuffer::new(server.flow.clone(), now),
                    announce_type,
                    request_errors: DecayingCounter::new(now),
                });
                RemotePeer::Client(client)
            }
        };
        let public_key = self.remote_public.unwrap_or_default();
        let hello = self.remote_hello.take();
        self.phase = Phase::Established;
        self.deadline = Some(now.saturating_add(READ_TIMEOUT));
        self.next_ping = Some(now.saturating_add(PING_INTERVAL));
        self.events.push_back(Event::Established(Box::new(PeerInfo {
            public_key,
            node_id: node_id(&public_key),
            client_id: hello.map(|h| h.client_id).unwrap_or_default(),
            version,
            capabilities: self.shared.clone(),
            status,
            remote,
        })));
        Ok(())
    }

    fn client_message(
        &mut self,
        id: u64,
        message: LesMessage,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        let announce_type = match &self.config.role {
            Role::Client(client) => client.announce_type,
            Role::Server(_) => AnnounceType::None,
        };
        let remote_id = self.remote_public.map(|public| node_id(&public)).unwrap_or_default();
        let Some(Side::Client { estimate, response_errors }) = &mut self.side else {
            return Err(SessionError::UnexpectedMessage { id, phase: "established" });
        };
        match message {
            LesMessage::Announce(announce) => {
                if !announce.head_td_within_limit() {
                    return Err(SessionError::TdTooLarge);
                }
                apply_parameter_update(estimate, &announce, now)?;
                if announce.is_parameter_update() {
                    return Ok(());
                }
                let signed = match announce_type {
                    AnnounceType::None => return Err(SessionError::UnsolicitedAnnouncement),
                    AnnounceType::Simple => None,
                    AnnounceType::Signed => {
                        let signature =
                            announce.signature()?.ok_or(SessionError::MissingSignature)?;
                        let head = AnnouncedHead {
                            hash: announce.head_hash,
                            number: announce.head_number,
                            td: announce.head_td,
                        };
                        head.verify(&signature, &remote_id)?;
                        Some(SignedAnnouncement { head, signature })
                    }
                };
                self.events.push_back(Event::Announcement { announce, signed });
            }
            LesMessage::Stop => {
                estimate.on_stop();
                self.events.push_back(Event::Stopped);
            }
            LesMessage::Resume(Resume { buffer_value }) => {
                estimate.on_resume(buffer_value, now);
                self.events.push_back(Event::Resumed { buffer_value });
            }
            reply => {
                let (Some(request_id), Some(buffer_value)) =
                    (reply.request_id(), reply.buffer_value())
                else {
                    // A request or a second Status sent to a client.
                    return Err(SessionError::UnexpectedMessage { id, phase: "established" });
                };
                if estimate.on_reply(request_id, buffer_value, now).is_err() {
                    // A reply we did not ask for, or answered twice (geth counts these).
                    if response_errors.add(now) > MAX_RESPONSE_ERRORS {
                        return Err(SessionError::TooManyResponseErrors);
                    }
                    return Ok(());
                }
                self.events.push_back(Event::Reply(reply));
            }
        }
        Ok(())
    }

    fn server_message(
        &mut self,
        id: u64,
        message: LesMessage,
        size: usize,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        let version = self.les.map_or(LesVersion::Les4, |(_, v)| v);
        let Some(Side::Server { buffer, request_errors, .. }) = &mut self.side else {
            return Err(SessionError::UnexpectedMessage { id, phase: "established" });
        };
        let Some(request) = message.as_request() else {
            // geth treats anything but the eight requests from a client as a protocol error.
            return Err(SessionError::UnexpectedMessage { id, phase: "established" });
        };
        let (code, items, within_limits) =
            (request.code(), request.item_count(), request.within_limits());
        if buffer.is_frozen() || !within_limits {
            // Dropped without a reply (research §3.10); the client pays for the bytes it sent,
            // as geth charges the incoming-size cost.
            buffer.charge(u64::try_from(size).unwrap_or(u64::MAX), now);
            if !within_limits && request_errors.add(now) > MAX_REQUEST_ERRORS {
                return Err(SessionError::TooManyRequestErrors);
            }
            return Ok(());
        }
        match buffer.accept(code, items, now) {
            Ok(ticket) => {
                self.events.push_back(Event::Request { ticket, request: message });
                Ok(())
            }
            Err(AcceptError::Underrun { .. }) if version >= LesVersion::Les3 => {
                self.freeze_client(now);
                Ok(())
            }
            Err(AcceptError::Underrun { .. }) => Err(SessionError::BufferOverrun),
            Err(AcceptError::Frozen) => Ok(()),
            Err(AcceptError::UnknownRequestCode(_)) => {
                if request_errors.add(now) > MAX_REQUEST_ERRORS {
                    return Err(SessionError::TooManyRequestErrors);
                }
                Ok(())
            }
        }
    }

    /// (Client) sends a request if the server's buffer can take it. The request ID inside
    /// the message is the caller's choice (geth uses random 64-bit IDs) and must be unique
    /// among outstanding requests.
    pub fn send_request(&mut self, request: LesMessage, now: Timestamp) -> Result<(), CallError> {
        if !self.is_established() {
            return Err(CallError::NotEstablished);
        }
        let Some(Side::Client { estimate, .. }) = &mut self.side else {
            return Err(CallError::WrongRole);
        };
        let Some(view) = request.as_request() else {
            return Err(CallError::NotARequest);
        };
        if !view.within_limits() {
            return Err(CallError::OutsideLimits);
        }
        let (code, items, request_id) = (view.code(), view.item_count(), view.request_id());
        let cost = estimate.request_cost(code, items).ok_or(CallError::NoCost(code))?;
        estimate.can_send(cost, now).map_err(CallError::Budget)?;
        self.send_les(&request).map_err(|_| CallError::TooLarge)?;
        estimate_after_send(&mut self.side, request_id, cost, now);
        Ok(())
    }

    /// (Server) answers the request that `ticket` accounts for. `real_cost` is what serving
    /// it actually cost (at most the ticket's maximum; the rest is refunded); the reply's
    /// buffer value is filled in here.
    pub fn reply(
        &mut self,
        ticket: RequestTicket,
        mut reply: LesMessage,
        real_cost: u64,
        now: Timestamp,
    ) -> Result<(), CallError> {
        if !self.is_established() {
            return Err(CallError::NotEstablished);
        }
        let Some(Side::Server { buffer, .. }) = &mut self.side else {
            return Err(CallError::WrongRole);
        };
        if reply.buffer_value().is_none() {
            return Err(CallError::NotAReply);
        }
        let buffer_value = buffer.complete(ticket, real_cost, now);
        reply.set_buffer_value(buffer_value);
        self.send_les(&reply).map_err(|_| CallError::TooLarge)
    }

    /// (Server) freezes the client: StopMsg now, requests dropped unanswered until its
    /// ResumeMsg, which follows after the freeze delay (700 ms plus up to 600 ms of jitter)
    /// once its buffer is above BL/8 (research §1.3, geth's `clientPeer.freeze`). Flow
    /// control does this when the client overruns its buffer; the server's driver does it
    /// when it is overloaded. A les/2 client has no Stop/Resume and is disconnected.
    /// `false` (and nothing sent) unless this is an established server session.
    pub fn freeze_client(&mut self, now: Timestamp) -> bool {
        if !self.is_established() {
            return false;
        }
        let version = self.les.map_or(LesVersion::Les4, |(_, v)| v);
        let Some(Side::Server { buffer, .. }) = &mut self.side else {
            return false;
        };
        if version < LesVersion::Les3 {
            self.disconnect(DisconnectReason::UselessPeer);
            return true;
        }
        let jitter =
            Duration::from_millis(u64::from(random_bytes::<1>().map_or(0, |b| b[0])) * 600 / 255);
        buffer.freeze(now, jitter);
        self.send_own_les(&LesMessage::Stop);
        self.events.push_back(Event::ClientFrozen);
        true
    }

    /// (Server) gives up on an accepted request without answering it (the server could not
    /// serve it: overloaded, or the client was frozen meanwhile). Its maximum cost stays
    /// charged, as for a request dropped while frozen.
    pub fn drop_request(&mut self, ticket: RequestTicket, now: Timestamp) {
        if let Some(Side::Server { buffer, .. }) = &mut self.side {
            let max_cost = ticket.max_cost();
            buffer.complete(ticket, max_cost, now);
        }
    }

    /// (Server) announces a new head in the form the client asked for: signed, plain, or not
    /// at all. `announcement` is signed once by the server and shared by all sessions.
    pub fn announce(
        &mut self,
        announcement: &SignedAnnouncement,
        reorg_depth: u64,
    ) -> Result<(), CallError> {
        if !self.is_established() {
            return Err(CallError::NotEstablished);
        }
        let Some(Side::Server { announce_type, .. }) = &self.side else {
            return Err(CallError::WrongRole);
        };
        let head = &announcement.head;
        let plain = Announce::new(head.hash, head.number, head.td, reorg_depth);
        let message = match announce_type {
            AnnounceType::None => return Ok(()),
            AnnounceType::Simple => plain,
            AnnounceType::Signed => plain.with_signature(&announcement.signature),
        };
        self.send_les(&LesMessage::Announce(message)).map_err(|_| CallError::TooLarge)
    }

    /// (Server) gives the client new flow-control parameters (a capacity change: MRR =
    /// capacity, BL = capacity × [`BUF_LIMIT_RATIO`](crate::flow::BUF_LIMIT_RATIO)) and tells
    /// it in a parameter-only Announce carrying `flowControl/BL` and `flowControl/MRR`.
    ///
    /// An increase applies at once; a decrease is enforced [`PARAM_DECREASE_DELAY`] later
    /// (the [`ClientBuffer`] schedules it), so requests the client sent under the old
    /// allowance before it heard of the change are not overruns. The client lowers its
    /// estimate as soon as the Announce arrives. The Announce has the zero head (geth's
    /// `announceData{Update: ...}`): a client takes it as a parameter update whatever
    /// announcement type it asked for, and does not see it as a head. Nothing is sent when
    /// the parameters in force are already these and no decrease is pending.
    ///
    /// [`PARAM_DECREASE_DELAY`]: crate::flow::PARAM_DECREASE_DELAY
    pub fn update_capacity(
        &mut self,
        buffer_limit: u64,
        min_recharge: u64,
        now: Timestamp,
    ) -> Result<(), CallError> {
        use crate::msg::{KvList, keys};
        if !self.is_established() {
            return Err(CallError::NotEstablished);
        }
        let Some(Side::Server { buffer, .. }) = &mut self.side else {
            return Err(CallError::WrongRole);
        };
        let params = buffer.params();
        if params.buffer_limit == buffer_limit
            && params.min_recharge == min_recharge
            && buffer.next_capacity_change().is_none()
        {
            return Ok(());
        }
        buffer.update_capacity(buffer_limit, min_recharge, now);
        let mut update = KvList::new();
        update.insert(keys::FLOW_CONTROL_BL, &buffer_limit);
        update.insert(keys::FLOW_CONTROL_MRR, &min_recharge);
        self.send_les(&LesMessage::Announce(Announce::parameter_update(update)))
            .map_err(|_| CallError::TooLarge)
    }

    /// Sends a message of a further negotiated capability (`code` relative to its offset).
    pub fn send_capability_message(
        &mut self,
        capability: &str,
        code: u64,
        payload: &[u8],
    ) -> Result<(), CallError> {
        if !self.is_established() {
            return Err(CallError::NotEstablished);
        }
        let id = self
            .shared
            .iter()
            .find(|shared| shared.name == capability)
            .and_then(|shared| shared.wire_id(code))
            .ok_or_else(|| CallError::Capability(capability.to_string()))?;
        self.send_data(id, payload).map_err(|_| CallError::TooLarge)
    }

    /// Ends the session with `reason`: a Disconnect is queued for transmission and an
    /// [`Event::Disconnected`] follows.
    pub fn disconnect(&mut self, reason: DisconnectReason) {
        self.close(reason, Initiative::Local, None);
    }

    fn fail(&mut self, error: SessionError) {
        let reason = error.disconnect_reason();
        self.close(reason, Initiative::Local, Some(error));
    }

    fn remote_disconnect(&mut self, data: &[u8]) {
        let reason = DisconnectReason::decode_lenient(data);
        self.close(reason, Initiative::Remote, None);
    }

    fn close(&mut self, reason: DisconnectReason, by: Initiative, error: Option<SessionError>) {
        if self.is_closed() {
            return;
        }
        if by == Initiative::Local && self.codec.is_some() {
            self.send_base(&BaseMessage::Disconnect(reason));
        }
        self.phase = Phase::Closed;
        self.deadline = None;
        self.next_ping = None;
        self.events.push_back(Event::Disconnected { reason, by, error });
    }

    /// Sends a message we generate ourselves (Ping, Pong, Status, Stop, Resume, Disconnect);
    /// all are far below every size limit, so a failure here is a broken session.
    fn send_base(&mut self, message: &BaseMessage) {
        let sent = message
            .encode_data()
            .map_err(SessionError::from)
            .and_then(|data| self.send_data(message.id(), &data).map_err(SessionError::from));
        if let Err(error) = sent {
            self.fail(error);
        }
    }

    fn send_own_les(&mut self, message: &LesMessage) {
        if let Err(error) = self.send_les(message) {
            self.fail(error.into());
        }
    }

    fn send_les(&mut self, message: &LesMessage) -> Result<(), FrameError> {
        let Some((index, _)) = self.les else { return Ok(()) };
        let Some(id) = self.shared.get(index).and_then(|les| les.wire_id(message.code())) else {
            return Ok(());
        };
        self.send_data(id, &message.encode())
    }

    /// Compresses (after Hello, when both sides speak p2p v5) and frames one message.
    fn send_data(&mut self, id: u64, data: &[u8]) -> Result<(), FrameError> {
        if self.snappy {
            let compressed = p2p::compress(data)
                .map_err(|_| FrameError::FrameDataTooLarge { len: data.len() })?;
            self.write_frame(id, &compressed)
        } else {
            self.write_frame(id, data)
        }
    }

    fn write_frame(&mut self, id: u64, data: &[u8]) -> Result<(), FrameError> {
        let frame_data = p2p::encode_frame_data(id, data);
        if let Some(codec) = self.codec.as_mut() {
            self.transmit.push_back(codec.write_frame(&frame_data)?);
        }
        Ok(())
    }
}

/// A parameter update (and the `flowControl/*` keys of any announcement) changes the
/// client's view of its buffer; geth requires BL and MRR to come together.
fn apply_parameter_update(
    estimate: &mut ServerBufferEstimate,
    announce: &Announce,
    now: Timestamp,
) -> Result<(), SessionError> {
    use crate::msg::keys;
    let params = &announce.params;
    let limit: Option<u64> = params.get(keys::FLOW_CONTROL_BL)?;
    let recharge: Option<u64> = params.get(keys::FLOW_CONTROL_MRR)?;
    if let (Some(limit), Some(recharge)) = (limit, recharge) {
        estimate.on_params(limit, recharge, now);
    }
    let costs: Option<Vec<RequestCost>> = params.get(keys::FLOW_CONTROL_MRC)?;
    if let Some(costs) = costs {
        estimate.on_costs(&costs.into_iter().collect());
    }
    Ok(())
}

/// Records a request as sent only once it is framed, so a refused send costs nothing.
fn estimate_after_send(side: &mut Option<Side>, request_id: u64, cost: u64, now: Timestamp) {
    if let Some(Side::Client { estimate, .. }) = side {
        estimate.on_send(request_id, cost, now);
    }
}
