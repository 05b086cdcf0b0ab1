//! A native LES client for the lesd tests: a `les::session::Session` in the client role
//! driven over tokio TCP, with an optional fast clock (to overrun the server's buffer the
//! way a client that ignores its estimate would).
#![allow(dead_code)]

use les::announce::SignedAnnouncement;
use les::crypto::{Enode, NodeKey};
use les::msg::{Announce, AnnounceType, ForkSchedule, LesMessage, LesVersion};
use les::p2p::DisconnectReason;
use les::session::{ClientConfig, Event, PeerInfo, Role, Session, SessionConfig};
use les::time::Timestamp;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Any byte stream a session can run over: TCP, or a WebSocket through les-bridge.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// How often the test lesd polls anvil for a new head.
pub const POLL: Duration = Duration::from_millis(50);

/// Starts an in-process lesd in front of `anvil_url` on OS-chosen ports (TCP, and WebSocket
/// when `ws`), with a metrics endpoint.
pub async fn start_lesd(anvil_url: &str, ws: bool) -> lesd::daemon::Daemon {
    let any_port = || "127.0.0.1:0".parse().expect("address");
    lesd::daemon::Daemon::start(lesd::daemon::DaemonConfig {
        upstream: anvil_url.to_string(),
        datadir: None,
        key: NodeKey::random().expect("rng"),
        listen: any_port(),
        ws: ws.then(any_port),
        metrics: Some(any_port()),
        max_clients: 100,
        serving_slots: lesd::node::default_serving_slots(),
        poll_interval: POLL,
    })
    .await
    .expect("lesd starts")
}

impl ChainInfo {
    /// What a client of `daemon` needs: its network ID and the fork schedule lesd derives
    /// from the upstream's genesis.
    pub fn of(daemon: &lesd::daemon::Daemon) -> Self {
        let upstream = daemon.upstream();
        let config = lesd::node::NodeConfig::new(
            NodeKey::random().expect("rng"),
            upstream.network_id(),
            upstream.genesis(),
            les::session::ServeOffer::ARCHIVE,
        );
        Self { network_id: upstream.network_id(), schedule: config.fork_schedule }
    }
}

/// Default wait for anything the server should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the client needs to know about the chain to pass Status validation.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    /// Status `networkId`.
    pub network_id: u64,
    /// Genesis hash and forks.
    pub schedule: ForkSchedule,
}

/// A connected, established LES client.
pub struct LesClient {
    session: Session,
    stream: Box<dyn ByteStream>,
    start: Instant,
    skew: Duration,
    events: VecDeque<Event>,
    next_id: u64,
    /// The server as it presented itself (set once established).
    pub info: Option<Box<PeerInfo>>,
}

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing arrived in time.
    Timeout,
    /// The session ended.
    Disconnected(DisconnectReason),
    /// The socket failed.
    Io(std::io::Error),
    /// The session refused to send.
    Call(les::session::CallError),
}

impl LesClient {
    /// Dials `enode` and completes the handshake.
    pub async fn connect(
        enode: &Enode,
        chain: &ChainInfo,
        announce_type: AnnounceType,
        versions: Vec<LesVersion>,
    ) -> Result<Self, ClientError> {
        let addr = enode.socket_addr().ok_or(ClientError::Timeout)?;
        let stream = TcpStream::connect(addr).await.map_err(ClientError::Io)?;
        let _ = stream.set_nodelay(true);
        Self::establish(Box::new(stream), enode, chain, announce_type, versions).await
    }

    /// Runs the handshake with `enode` over an already open byte stream (a WebSocket to
    /// les-bridge or to lesd --ws, say).
    pub async fn establish(
        stream: Box<dyn ByteStream>,
        enode: &Enode,
        chain: &ChainInfo,
        announce_type: AnnounceType,
        versions: Vec<LesVersion>,
    ) -> Result<Self, ClientError> {
        let start = Instant::now();
        let key = NodeKey::random().map_err(|_| ClientError::Timeout)?;
        let role = Role::Client(ClientConfig { announce_type, trusted: true });
        let config = SessionConfig {
            versions,
            ..SessionConfig::new(key, role, chain.network_id, chain.schedule.clone())
        };
        let session = Session::connect(config, enode.public_key, Timestamp::from_nanos(0))
            .map_err(|_| ClientError::Timeout)?;
        let mut client = Self {
            session,
            stream,
            start,
            skew: Duration::ZERO,
            events: VecDeque::new(),
            next_id: 1,
            info: None,
        };
        match client.wait_event(|e| matches!(e, Event::Established(_)), WAIT).await? {
            Event::Established(info) => client.info = Some(info),
            _ => return Err(ClientError::Timeout),
        }
        Ok(client)
    }

    /// The client's clock: real time plus the skew.
    pub fn now(&self) -> Timestamp {
        let elapsed = self.start.elapsed() + self.skew;
        Timestamp::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Runs the client's clock ahead by `by` (its buffer estimate recharges that much).
    pub fn advance_clock(&mut self, by: Duration) {
        self.skew += by;
    }

    /// Whether the session is still open.
    pub fn is_open(&self) -> bool {
        !self.session.is_closed()
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(bytes) = self.session.poll_transmit() {
            self.stream.write_all(&bytes).await.map_err(ClientError::Io)?;
        }
        Ok(())
    }

    /// Reads once (at most `wait`), feeding the session; fires due timers.
    async fn pump(&mut self, wait: Duration) -> Result<(), ClientError> {
        self.flush().await?;
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) => {
                // The server closed the socket; let the session notice via a timeout path.
                if !self.session.is_closed() {
                    self.session.disconnect(DisconnectReason::NetworkError);
                }
            }
            Ok(Ok(n)) => {
                let now = self.now();
                self.session.handle_input(&buf[..n], now);
            }
            Ok(Err(error)) => return Err(ClientError::Io(error)),
            Err(_) => {}
        }
        let now = self.now();
        if self.session.poll_timeout().is_some_and(|at| at <= now) {
            self.session.handle_timeout(now);
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push_back(event);
        }
        self.flush().await
    }

    /// The first queued or arriving event matching `wanted`, within `timeout`. Ends with
    /// `Disconnected` if the session closes first.
    pub async fn wait_event(
        &mut self,
        wanted: impl Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(index) = self.events.iter().position(&wanted)
                && let Some(event) = self.events.remove(index)
            {
                return Ok(event);
            }
            if let Some(Event::Disconnected { reason, .. }) =
                self.events.iter().find(|e| matches!(e, Event::Disconnected { .. }))
            {
                return Err(ClientError::Disconnected(*reason));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            self.pump(left.min(Duration::from_millis(100))).await?;
        }
    }

    /// A fresh request ID.
    pub fn next_request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends a request (built around a fresh request ID) without waiting.
    pub async fn send(
        &mut self,
        build: impl FnOnce(u64) -> LesMessage,
    ) -> Result<u64, ClientError> {
        let id = self.next_request_id();
        let now = self.now();
        self.session.send_request(build(id), now).map_err(ClientError::Call)?;
        self.flush().await?;
        Ok(id)
    }

    /// Queues a request in the session without writing it out (see [`Self::flush_queued`]).
    pub fn queue(&mut self, build: impl FnOnce(u64) -> LesMessage) -> Result<u64, ClientError> {
        let id = self.next_request_id();
        let now = self.now();
        self.session.send_request(build(id), now).map_err(ClientError::Call)?;
        Ok(id)
    }

    /// Writes out everything queued, in one go.
    pub async fn flush_queued(&mut self) -> Result<(), ClientError> {
        let mut out = Vec::new();
        while let Some(bytes) = self.session.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
        self.stream.write_all(&out).await.map_err(ClientError::Io)
    }

    /// Sends a request and waits for its reply.
    pub async fn request(
        &mut self,
        build: impl FnOnce(u64) -> LesMessage,
    ) -> Result<LesMessage, ClientError> {
        let id = self.send(build).await?;
        self.reply(id, WAIT).await
    }

    /// Waits for the reply to request `id`.
    pub async fn reply(&mut self, id: u64, timeout: Duration) -> Result<LesMessage, ClientError> {
        match self
            .wait_event(
                |e| matches!(e, Event::Reply(reply) if reply.request_id() == Some(id)),
                timeout,
            )
            .await?
        {
            Event::Reply(reply) => Ok(reply),
            _ => Err(ClientError::Timeout),
        }
    }

    /// The next head announcement.
    pub async fn announcement(
        &mut self,
        timeout: Duration,
    ) -> Result<(Announce, Option<SignedAnnouncement>), ClientError> {
        match self.wait_event(|e| matches!(e, Event::Announcement { .. }), timeout).await? {
            Event::Announcement { announce, signed } => Ok((announce, signed)),
            _ => Err(ClientError::Timeout),
        }
    }

    /// The next announcement of a head at `number` or above.
    pub async fn announcement_at_least(
        &mut self,
        number: u64,
        timeout: Duration,
    ) -> Result<(Announce, Option<SignedAnnouncement>), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (announce, signed) = self.announcement(left).await?;
            if announce.head_number >= number {
                return Ok((announce, signed));
            }
        }
    }

    /// Events received but not consumed yet.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Services the connection until it closes: answers pings, reports the arrival time of
    /// every head announcement on `announcements`, drops everything else.
    pub async fn run_idle(
        mut self,
        announcements: Option<tokio::sync::mpsc::UnboundedSender<Instant>>,
    ) {
        while self.is_open() {
            if self.pump(Duration::from_secs(5)).await.is_err() {
                return;
            }
            for event in self.events.drain(..) {
                if let (Event::Announcement { .. }, Some(sender)) = (&event, &announcements) {
                    let _ = sender.send(Instant::now());
                }
            }
        }
    }

    /// Keeps the connection serviced (pings answered) for `duration`.
    pub async fn idle(&mut self, duration: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline && self.is_open() {
            self.pump(Duration::from_millis(50)).await?;
        }
        Ok(())
    }
}
