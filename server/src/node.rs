//! The listener side of lesd: accepts TCP (and WebSocket) connections and runs one tokio
//! task per client, each driving a [`les::session::Session`] in the server role.
//!
//! A client task is the only owner of its session and its socket, so a slow or hostile
//! client can only slow itself down:
//! - requests are served concurrently (at most [`NodeConfig::max_in_flight`] per client;
//!   beyond that the task stops reading, which is back-pressure on the client's socket) and
//!   their replies are written in request order;
//! - every write has a timeout; a client that does not read its replies is dropped;
//! - flow control (Stop/Resume, les/2 disconnection) is the session's.
//!
//! With the service model on ([`crate::pay::service`]), every established client is admitted
//! to the client pool or disconnected with TooManyPeers, its served requests are charged,
//! `lespay/1` is offered beside LES and its requests answered, and the pool's capacity
//! changes reach the session's flow control (and the client, as a parameter update and a
//! lespay `CapacityUpdate`); a client the pool deactivates is told and disconnected.
//!
//! New heads come from the [`crate::follow::Follower`] through a `watch` channel: each task
//! announces the latest head (signed once by the follower) to its client, in the form the
//! client asked for. Right after the Status exchange the current head is announced too,
//! because our clients count only signed heads and the Status head is unsigned.

use crate::follow::{HeadReceiver, HeadUpdate};
use crate::metrics::Metrics;
use crate::pay::service::{AdmitError, ClientHandle, Command, LespayOutcome, PayService};
use crate::queue::{Overloaded, Rank, ServingQueue};
use crate::serve::{Served, Server};
use futures_util::stream::{FuturesOrdered, StreamExt};
use les::announce::AnnouncedHead;
use les::chain::SealedHeader;
use les::crypto::{Enode, NodeKey};
use les::flow::{FlowParams, RequestTicket};
use les::msg::{ForkSchedule, LesVersion, MAINNET_GENESIS_HASH};
use les::p2p::DisconnectReason;
use les::pay::messages::{LESPAY, LespayMessage};
use les::pay::pool::PriorityClass;
use les::session::{Event, Role, ServeOffer, ServerConfig, Session, SessionConfig};
use les::time::Timestamp;
use les_bridge::WsByteStream;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Bytes read from a client socket at a time. Small, because an idle client keeps its
/// buffer: 10,000 clients hold 40 MiB of read buffers.
const READ_CHUNK: usize = 4 * 1024;

/// The largest WebSocket message accepted: one RLPx frame of a maximal LES message fits.
const WS_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Time allowed for the WebSocket upgrade.
const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections beyond `max_clients` still get the RLPx handshake so they can be told
/// TooManyPeers; beyond this many more they are closed at once.
const OVER_LIMIT_GRACE: usize = 64;

/// What every client session is offered.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The server's static node key.
    pub key: NodeKey,
    /// Name sent in Hello.
    pub client_id: String,
    /// LES versions spoken.
    pub versions: Vec<LesVersion>,
    /// The Status `networkId`.
    pub network_id: u64,
    /// Genesis hash and fork schedule (fork ID).
    pub fork_schedule: ForkSchedule,
    /// Flow-control parameters per client at connection (the service model's minimum
    /// capacity when it runs; the pool changes them later).
    pub flow: FlowParams,
    /// What data is served.
    pub offer: ServeOffer,
    /// Most clients at once; more are disconnected with TooManyPeers.
    pub max_clients: usize,
    /// Most requests served at once per client.
    pub max_in_flight: usize,
    /// Most requests of all clients served at once; more wait in the serving queue
    /// ([`crate::queue`]), paying clients' first.
    pub serving_slots: usize,
    /// A write that does not complete in this time drops the client.
    pub write_timeout: Duration,
}

impl NodeConfig {
    /// Defaults for a server in front of `genesis` on network `network_id`: all LES
    /// versions, geth's default flow parameters, 10,000 clients.
    ///
    /// The fork schedule is mainnet's for mainnet's genesis; any other chain is taken to
    /// have every fork active from genesis (anvil, dev chains), since a JSON-RPC node does
    /// not reveal its fork schedule.
    pub fn new(key: NodeKey, network_id: u64, genesis: &SealedHeader, offer: ServeOffer) -> Self {
        let fork_schedule = if genesis.hash() == MAINNET_GENESIS_HASH {
            ForkSchedule::mainnet()
        } else {
            ForkSchedule::new(genesis.hash(), genesis.header().timestamp, [], [])
        };
        Self {
            key,
            client_id: format!("lesd/v{}", env!("CARGO_PKG_VERSION")),
            versions: LesVersion::ALL.to_vec(),
            network_id,
            fork_schedule,
            flow: FlowParams::geth_default(),
            offer,
            max_clients: 10_000,
            max_in_flight: 16,
            serving_slots: default_serving_slots(),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// The accepting side of lesd: shared by every client task.
#[derive(Debug, Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: NodeConfig,
    server: Server,
    heads: HeadReceiver,
    genesis: SealedHeader,
    metrics: Metrics,
    service: Option<PayService>,
    queue: ServingQueue,
    shutdown: watch::Receiver<bool>,
    started: Instant,
    /// Connection tasks alive (handshaking or established).
    active: AtomicUsize,
    all_closed: Notify,
}

/// A request being served: resolves to its ticket and reply.
type InFlight = Pin<Box<dyn Future<Output = (RequestTicket, Option<Served>)> + Send>>;

impl Node {
    /// A node serving with `server`, announcing what `heads` publishes, admitting clients
    /// through `service` (none: everyone gets `config.flow`, nothing is charged), until
    /// `shutdown` turns true.
    pub fn new(
        config: NodeConfig,
        server: Server,
        heads: HeadReceiver,
        genesis: SealedHeader,
        metrics: Metrics,
        service: Option<PayService>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let queue = ServingQueue::new(config.serving_slots, metrics.queue_paid_ahead_counter());
        Self {
            shared: Arc::new(Shared {
                config,
                server,
                heads,
                genesis,
                metrics,
                service,
                queue,
                shutdown,
                started: Instant::now(),
                active: AtomicUsize::new(0),
                all_closed: Notify::new(),
            }),
        }
    }

    /// The enode URL of this node at `addr`.
    pub fn enode(&self, addr: SocketAddr) -> Enode {
        Enode {
            public_key: self.shared.config.key.public_key(),
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// Connection tasks alive now (handshaking or established).
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Accepts TCP clients until shutdown.
    pub async fn run_tcp(&self, listener: TcpListener) {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Small frames (announcements, short replies) should leave at once.
                    let _ = stream.set_nodelay(true);
                    self.spawn_connection(stream, peer);
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Accepts WebSocket clients until shutdown: each binary message carries RLPx bytes, so
    /// the session runs over it exactly as over TCP.
    pub async fn run_ws(&self, listener: TcpListener) {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "WebSocket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let node = self.clone();
            // The WebSocket handshake runs in its own task so a slow one blocks no one.
            tokio::spawn(async move {
                let handshake = les_bridge::ws::accept(stream, WS_MAX_MESSAGE_SIZE);
                match tokio::time::timeout(WS_HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(ws)) => node.spawn_connection(WsByteStream::new(ws), peer),
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "WebSocket handshake"),
                    Err(_) => tracing::debug!(%peer, "WebSocket handshake timed out"),
                }
            });
        }
    }

    /// Runs a client session over any byte stream (a TCP socket, a WebSocket adapter).
    pub fn spawn_connection<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let active = self.shared.active.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(Arc::clone(&self.shared));
        let max = self.shared.config.max_clients;
        if active >= max.saturating_add(OVER_LIMIT_GRACE) {
            tracing::debug!(%peer, "connection refused: far over max-clients");
            drop(guard);
            return;
        }
        let over_limit = active >= max;
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            run_client(&shared, stream, peer, over_limit).await;
            drop(guard);
        });
    }

    /// Waits until every connection task has ended (after shutdown).
    pub async fn wait_for_clients(&self) {
        loop {
            let notified = self.shared.all_closed.notified();
            if self.shared.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a connection task; wakes [`Node::wait_for_clients`] when the last one ends.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

impl Shared {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant_of(&self, at: Timestamp) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.started) + Duration::from_nanos(at.as_nanos())
    }

    fn session_config(&self, current: Option<&HeadUpdate>) -> SessionConfig {
        let config = &self.config;
        let (header, td) = match current {
            Some(update) => (&update.header, update.head().td),
            None => (&self.genesis, Default::default()),
        };
        SessionConfig {
            key: config.key.clone(),
            client_id: config.client_id.clone(),
            versions: config.versions.clone(),
            extra_capabilities: if self.service.is_some() {
                vec![les::pay::messages::capability()]
            } else {
                Vec::new()
            },
            network_id: config.network_id,
            fork_schedule: config.fork_schedule.clone(),
            head_number: header.number(),
            head_time: header.header().timestamp,
            role: Role::Server(ServerConfig {
                head: AnnouncedHead { hash: header.hash(), number: header.number(), td },
                flow: config.flow.clone(),
                offer: config.offer,
            }),
        }
    }
}

/// What a client task knows about the heads its client was told.
#[derive(Debug, Default)]
struct Announced {
    /// The head in our Status: (update seq, number).
    status: Option<(u64, u64)>,
    /// The last announced head: (update seq, number).
    last: Option<(u64, u64)>,
}

impl Announced {
    fn announce(&mut self, session: &mut Session, update: &HeadUpdate, metrics: &Metrics) {
        if self.last.is_some_and(|(seq, _)| seq >= update.seq) {
            return;
        }
        let depth = update.reorg_depth_since(self.last.or(self.status));
        if session.announce(&update.announcement, depth).is_ok() {
            metrics.announcement_sent();
            self.last = Some((update.seq, update.header.number()));
        }
    }
}

/// Writes out everything the session has queued, within the write timeout.
async fn flush<W: AsyncWrite + Unpin>(
    session: &mut Session,
    writer: &mut W,
    shared: &Shared,
) -> Result<(), FlushError> {
    let mut out = Vec::new();
    while let Some(bytes) = session.poll_transmit() {
        out.extend_from_slice(&bytes);
    }
    if out.is_empty() {
        return Ok(());
    }
    let write = async {
        writer.write_all(&out).await?;
        writer.flush().await
    };
    match tokio::time::timeout(shared.config.write_timeout, write).await {
        Ok(Ok(())) => {
            shared.metrics.bytes_out(out.len());
            Ok(())
        }
        Ok(Err(error)) => Err(FlushError::Io(error)),
        Err(_) => Err(FlushError::Timeout),
    }
}

/// Why writing to a client failed.
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error("write: {0}")]
    Io(#[from] std::io::Error),
    #[error("write timed out")]
    Timeout,
}

/// Sends one lespay message (the capability is negotiated: only then do requests come).
fn send_lespay(session: &mut Session, message: &LespayMessage, peer: SocketAddr) {
    let (code, payload) = message.encode();
    if let Err(error) = session.send_capability_message(LESPAY, code, &payload) {
        tracing::debug!(%peer, %error, "lespay message not sent");
    }
}

/// Gives the session the flow parameters of `capacity`.
fn apply_capacity(session: &mut Session, service: &PayService, capacity: u64, now: Timestamp) {
    let flow = service.flow_params(capacity);
    if let Err(error) = session.update_capacity(flow.buffer_limit, flow.min_recharge, now) {
        tracing::debug!(%error, "capacity not applied");
    }
}

/// The client's link to the pool, once admitted.
struct PoolClient {
    handle: ClientHandle,
    /// Whether the client negotiated lespay (only then are pushes sent).
    lespay: bool,
}

async fn next_command(client: &mut Option<PoolClient>) -> Option<Command> {
    match client {
        Some(client) => client.handle.next_command().await,
        None => std::future::pending().await,
    }
}

/// One client connection from accept to close.
async fn run_client<S>(shared: &Arc<Shared>, stream: S, peer: SocketAddr, over_limit: bool)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut heads = shared.heads.clone();
    let current = heads.borrow_and_update().clone();
    let mut session = match Session::accept(shared.session_config(current.as_deref()), shared.now())
    {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(%error, "cannot start a session (node key?)");
            return;
        }
    };
    let mut announced =
        Announced { status: current.as_ref().map(|u| (u.seq, u.header.number())), last: None };
    let mut shutdown = shared.shutdown.clone();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut established = false;
    let mut pool_client: Option<PoolClient> = None;
    let mut heads_open = true;
    // Without the service model every client ranks the same (arrival order).
    let mut rank = Rank::default();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Established(info) => {
                    established = true;
                    shared.metrics.client_connected(true);
                    tracing::debug!(%peer, client = %info.client_id, version = %info.version, "client established");
                    if let Some(service) = &shared.service {
                        match service.connect(info.node_id, peer) {
                            Ok(handle) => {
                                let initial = shared.config.flow.min_recharge;
                                if handle.capacity() != initial {
                                    apply_capacity(
                                        &mut session,
                                        service,
                                        handle.capacity(),
                                        shared.now(),
                                    );
                                }
                                let lespay = info.capabilities.iter().any(|c| c.name == LESPAY);
                                rank = Rank::new(
                                    handle.class() == PriorityClass::Paid,
                                    handle.capacity(),
                                );
                                pool_client = Some(PoolClient { handle, lespay });
                            }
                            Err(error) => {
                                tracing::debug!(%peer, %error, "client not admitted");
                                session.disconnect(match error {
                                    AdmitError::Rejected => DisconnectReason::TooManyPeers,
                                    AdmitError::AlreadyConnected(_) => {
                                        DisconnectReason::AlreadyConnected
                                    }
                                });
                                continue;
                            }
                        }
                    }
                    let latest = heads.borrow_and_update().clone();
                    if let Some(update) = latest {
                        announced.announce(&mut session, &update, &shared.metrics);
                    }
                }
                Event::Request { ticket, request } => match shared.queue.arrive(rank) {
                    Err(overloaded) => {
                        overload(
                            &mut session,
                            shared,
                            pool_client.as_ref(),
                            ticket,
                            overloaded,
                            peer,
                        );
                    }
                    Ok(turn) => {
                        let server = shared.server.clone();
                        let metrics = shared.metrics.clone();
                        in_flight.push_back(Box::pin(async move {
                            let max_cost = ticket.max_cost();
                            // Time in the queue is not serving time: the real cost (and what
                            // the client is charged) starts with the slot.
                            let arrived = Instant::now();
                            let waited = turn.waits();
                            let slot = turn.slot().await;
                            if waited {
                                metrics.queue_wait(rank.class(), arrived.elapsed());
                            }
                            let served = server.serve(request, max_cost).await;
                            drop(slot);
                            (ticket, served)
                        }));
                    }
                },
                Event::ClientFrozen => tracing::debug!(%peer, "client frozen: stopped"),
                Event::ClientResumed => tracing::debug!(%peer, "client resumed"),
                Event::Disconnected { reason, by, error } => {
                    tracing::debug!(%peer, %reason, ?by, ?error, "client disconnected");
                }
                Event::CapabilityMessage { capability, code, payload } if capability == LESPAY => {
                    let Some(client) = &mut pool_client else { continue };
                    match client.handle.lespay(code, &payload) {
                        LespayOutcome::Reply(reply) => send_lespay(&mut session, &reply, peer),
                        LespayOutcome::Granted { capacity, reply } => {
                            if let LespayMessage::CapacityGranted { balance, .. } = &reply {
                                rank = Rank::new(
                                    balance.priority_class == PriorityClass::Paid,
                                    capacity,
                                );
                            }
                            if let Some(service) = &shared.service {
                                apply_capacity(&mut session, service, capacity, shared.now());
                            }
                            send_lespay(&mut session, &reply, peer);
                        }
                        LespayOutcome::Pending => {}
                        LespayOutcome::Disconnect => {
                            tracing::debug!(%peer, "lespay requests far over the rate limit");
                            session.disconnect(DisconnectReason::SubprotocolError);
                        }
                    }
                }
                Event::Announcement { .. }
                | Event::Reply(_)
                | Event::Stopped
                | Event::Resumed { .. }
                | Event::CapabilityMessage { .. } => {}
            }
        }
        if over_limit && !session.is_closed() && session.remote_public_key().is_some() {
            session.disconnect(DisconnectReason::TooManyPeers);
        }
        if let Err(error) = flush(&mut session, &mut writer, shared).await {
            tracing::debug!(%peer, %error, "dropping client");
            break;
        }
        if session.is_closed() {
            break;
        }
        let deadline = session.poll_timeout().map(|at| shared.instant_of(at));
        let can_read = in_flight.len() < shared.config.max_in_flight;
        tokio::select! {
            read = reader.read(&mut buf), if can_read => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    shared.metrics.bytes_in(n);
                    if let Some(bytes) = buf.get(..n) {
                        session.handle_input(bytes, shared.now());
                    }
                }
            },
            Some((ticket, served)) = in_flight.next(), if !in_flight.is_empty() => {
                // The session emits requests only, and every request has an answer.
                if let Some(served) = served {
                    if let Some(client) = &pool_client {
                        client.handle.request_served(served.cost);
                    }
                    if let Err(error) = session.reply(ticket, served.reply, served.cost, shared.now()) {
                        tracing::debug!(%peer, %error, "reply not sent");
                    }
                }
            }
            changed = heads.changed(), if established && heads_open => {
                if changed.is_ok() {
                    let latest = heads.borrow_and_update().clone();
                    if let Some(update) = latest {
                        announced.announce(&mut session, &update, &shared.metrics);
                    }
                } else {
                    heads_open = false;
                }
            }
            Some(command) = next_command(&mut pool_client) => {
                let lespay = pool_client.as_ref().is_some_and(|c| c.lespay);
                match command {
                    Command::Capacity { capacity, balance } => {
                        rank = Rank::new(balance.priority_class == PriorityClass::Paid, capacity);
                        if let Some(service) = &shared.service {
                            apply_capacity(&mut session, service, capacity, shared.now());
                        }
                        if lespay {
                            send_lespay(&mut session, &LespayMessage::CapacityUpdate { capacity, balance }, peer);
                        }
                    }
                    Command::Kick { balance } => {
                        if lespay {
                            send_lespay(&mut session, &LespayMessage::CapacityUpdate { capacity: 0, balance }, peer);
                        }
                        tracing::debug!(%peer, "deactivated by the client pool");
                        session.disconnect(DisconnectReason::TooManyPeers);
                    }
                    Command::Send(message) => send_lespay(&mut session, &message, peer),
                }
            }
            _ = sleep_until(deadline) => session.handle_timeout(shared.now()),
            _ = shutdown.wait_for(|stop| *stop) => session.disconnect(DisconnectReason::Quitting),
        }
    }
    if established {
        shared.metrics.client_connected(false);
    }
    let _ = tokio::time::timeout(shared.config.write_timeout, writer.shutdown()).await;
}

/// Too much is waiting for the serving slots: the request is dropped and this free client
/// frozen (once per freeze; geth freezes the weakest clients first) and, as an overload
/// event, the pool's total capacity drops.
fn overload(
    session: &mut Session,
    shared: &Shared,
    pool_client: Option<&PoolClient>,
    ticket: RequestTicket,
    overloaded: Overloaded,
    peer: SocketAddr,
) {
    let now = shared.now();
    session.drop_request(ticket, now);
    let frozen = session.client_buffer().is_some_and(|buffer| buffer.is_frozen());
    if !frozen && session.freeze_client(now) {
        tracing::debug!(%peer, %overloaded, "overloaded: client frozen");
        shared.metrics.overload();
        if let Some(client) = pool_client {
            client.handle.overloaded();
        }
    }
}

/// Serving slots by default: four per core, at least eight. A slot is mostly an upstream
/// round trip in flight, so more slots than cores keep the node busy; few enough that a busy
/// server has a queue for paying clients to go first in.
pub fn default_serving_slots() -> usize {
    std::thread::available_parallelism().map_or(8, |n| (n.get() * 4).max(8))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
