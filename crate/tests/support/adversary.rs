//! An adversary: an in-process LES server that is honest except where told to lie.
//!
//! It is lesd's own serving code (`lesd::serve::Server` in front of anvil, lesd's head
//! follower signing with its node key) behind a `les::session::Session` in the server role,
//! driven here like lesd's `node.rs` drives it, with one difference: every reply and every
//! announcement passes through the current [`Lie`] before it is sent. Everything it sends
//! is well-formed LES; only the content is false. It can also play dead ([`Adversary::set_down`]).

use alloy_consensus::Eip658Value;
use alloy_primitives::{Bytes, U256, keccak256, logs_bloom};
use alloy_trie::TrieAccount;
use les::announce::{AnnouncedHead, SignedAnnouncement};
use les::chain::{BlockBody, BlockReceipts, SealedHeader};
use les::crypto::{Enode, NodeId, NodeKey};
use les::msg::LesMessage;
use les::p2p::DisconnectReason;
use les::session::{Event, Initiative, Role, ServeOffer, ServerConfig, Session, SessionConfig};
use les::time::Timestamp;
use lesd::follow::{Follower, HeadReceiver, HeadUpdate};
use lesd::node::NodeConfig;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the adversary lies about. Data lies change every reply of their kind; announcement
/// lies change every announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Honest.
    None,
    /// Headers with a changed timestamp (so their hash is not the one asked for).
    Header,
    /// Bodies with their last transaction dropped.
    Body,
    /// Receipts with the first receipt's status flipped.
    ReceiptStatus,
    /// Receipts with a log dropped (and the bloom recomputed to match).
    ReceiptLog,
    /// Proofs with the balance in the account leaf raised.
    ProofBalance,
    /// Proofs with a node left out.
    ProofNode,
    /// Codes with a byte appended.
    Code,
    /// Empty answers to every request: hiding data.
    Empty,
    /// Heads signed (with the real node key) under a different hash at the real number.
    HeadHash,
    /// Real heads with a signature by another key.
    Signature,
}

/// A running adversary; stops when dropped.
pub struct Adversary {
    enode: Enode,
    shared: Arc<Shared>,
    down: watch::Sender<bool>,
    stop: watch::Sender<bool>,
}

struct Shared {
    key: NodeKey,
    /// Signs the forged announcements of [`Lie::Signature`].
    forger: NodeKey,
    node: NodeConfig,
    genesis: SealedHeader,
    server: lesd::serve::Server,
    heads: HeadReceiver,
    lie: Mutex<Lie>,
    lies: AtomicU64,
    remote_disconnects: Mutex<Vec<DisconnectReason>>,
    started: Instant,
}

impl Adversary {
    /// Starts serving anvil at `anvil_url` on an OS-chosen port, lying as `lie` says.
    pub async fn start(anvil_url: &str, lie: Lie) -> Self {
        let key = NodeKey::random().expect("rng");
        let upstream = lesd::upstream::Upstream::connect(anvil_url, None).await.expect("upstream");
        let metrics = lesd::metrics::Metrics::new();
        let follower = Follower::new(
            upstream.clone(),
            key.clone(),
            Duration::from_millis(50),
            metrics.clone(),
        );
        let heads = follower.subscribe();
        let server =
            lesd::serve::Server::new(upstream.clone(), follower.window(), heads.clone(), metrics);
        let node = NodeConfig::new(
            key.clone(),
            upstream.network_id(),
            upstream.genesis(),
            ServeOffer::ARCHIVE,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            forger: NodeKey::random().expect("rng"),
            node,
            genesis: upstream.genesis().clone(),
            server,
            heads,
            lie: Mutex::new(lie),
            lies: AtomicU64::new(0),
            remote_disconnects: Mutex::new(Vec::new()),
            started: Instant::now(),
            key,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (down, down_rx) = watch::channel(false);
        tokio::spawn(follower.run(stop_rx.clone()));
        tokio::spawn(accept(listener, shared.clone(), down_rx, stop_rx));
        let enode = Enode {
            public_key: shared.key.public_key(),
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        Self { enode, shared, down, stop }
    }

    /// The enode URL to configure.
    pub fn enode(&self) -> String {
        self.enode.to_string()
    }

    /// The node ID (as the client's metrics and `HeadInfo::signers` name it).
    pub fn node_id(&self) -> NodeId {
        self.enode.node_id()
    }

    /// Changes what it lies about from now on.
    pub fn set_lie(&self, lie: Lie) {
        *self.shared.lie.lock().expect("lie") = lie;
    }

    /// Replies and announcements falsified so far.
    pub fn lies(&self) -> u64 {
        self.shared.lies.load(Ordering::Relaxed)
    }

    /// The reasons of every Disconnect a client sent it.
    pub fn remote_disconnects(&self) -> Vec<DisconnectReason> {
        self.shared.remote_disconnects.lock().expect("disconnects").clone()
    }

    /// Down: every session is cut (the socket just closes) and new connections are accepted
    /// but left unanswered, as by a hung server. Up again: the connections held are served
    /// (a client still waiting in its handshake gets its answer), and new ones too.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

impl Drop for Adversary {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    down: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut stopped = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(shared.clone(), stream, down.clone(), stop.clone()));
            }
            _ = stopped.wait_for(|stop| *stop) => return,
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

    fn lie(&self) -> Lie {
        *self.lie.lock().expect("lie")
    }

    fn session_config(&self, current: Option<&HeadUpdate>) -> SessionConfig {
        let (header, td) =
            current.map_or((&self.genesis, U256::ZERO), |u| (&u.header, u.head().td));
        let mut config = SessionConfig::new(
            self.key.clone(),
            Role::Server(ServerConfig {
                head: AnnouncedHead { hash: header.hash(), number: header.number(), td },
                flow: self.node.flow.clone(),
                offer: self.node.offer,
            }),
            self.node.network_id,
            self.node.fork_schedule.clone(),
        );
        config.client_id = "adversary".into();
        config.head_number = header.number();
        config.head_time = header.header().timestamp;
        config
    }

    /// The announcement of `update` as the current lie has it.
    fn announcement(&self, update: &HeadUpdate) -> SignedAnnouncement {
        let real = *update.head();
        let forged = match self.lie() {
            Lie::HeadHash => AnnouncedHead { hash: keccak256(real.hash), ..real }.signed(&self.key),
            Lie::Signature => real.signed(&self.forger),
            _ => return update.announcement,
        };
        self.lies.fetch_add(1, Ordering::Relaxed);
        forged
    }

    /// `reply` as the current lie has it.
    fn falsify(&self, reply: LesMessage) -> LesMessage {
        let (reply, lied) = falsify(self.lie(), reply);
        if lied {
            self.lies.fetch_add(1, Ordering::Relaxed);
        }
        reply
    }
}

/// Waits while the server is down; false if it is stopped meanwhile.
async fn wait_up(down: &mut watch::Receiver<bool>, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        up = down.wait_for(|down| !*down) => up.is_ok(),
        _ = stop.wait_for(|stop| *stop) => false,
    }
}

/// One client connection, driven like lesd's `run_client`, but serving one request at a time.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut down: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    if !wait_up(&mut down, &mut stop).await {
        return;
    }
    let (mut reader, mut writer) = stream.into_split();
    let mut heads = shared.heads.clone();
    let current = heads.borrow_and_update().clone();
    let Ok(mut session) = Session::accept(shared.session_config(current.as_deref()), shared.now())
    else {
        return;
    };
    // (update seq, number) of the head in our Status, and of the last one announced.
    let status = current.as_ref().map(|u| (u.seq, u.header.number()));
    let mut announced = None;
    let announce =
        |session: &mut Session, update: &HeadUpdate, announced: &mut Option<(u64, u64)>| {
            if announced.is_some_and(|(seq, _)| seq >= update.seq) {
                return;
            }
            let depth = update.reorg_depth_since(announced.or(status));
            if session.announce(&shared.announcement(update), depth).is_ok() {
                *announced = Some((update.seq, update.header.number()));
            }
        };
    let mut established = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Established(_) => {
                    established = true;
                    // Our Status head is unsigned: announce it signed at once, as lesd does.
                    if let Some(update) = heads.borrow_and_update().clone() {
                        announce(&mut session, &update, &mut announced);
                    }
                }
                Event::Request { ticket, request } => {
                    if let Some(served) = shared.server.serve(request, ticket.max_cost()).await {
                        let reply = shared.falsify(served.reply);
                        let _ = session.reply(ticket, reply, served.cost, shared.now());
                    }
                }
                Event::Disconnected { reason, by: Initiative::Remote, .. } => {
                    shared.remote_disconnects.lock().expect("disconnects").push(reason);
                }
                _ => {}
            }
        }
        while let Some(bytes) = session.poll_transmit() {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        if session.is_closed() {
            return;
        }
        let deadline = session.poll_timeout().map(|at| shared.instant_of(at));
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => session.handle_input(&buf[..n], shared.now()),
            },
            changed = heads.changed(), if established => {
                if changed.is_err() {
                    return;
                }
                if let Some(update) = heads.borrow_and_update().clone() {
                    announce(&mut session, &update, &mut announced);
                }
            }
            _ = sleep_until(deadline) => session.handle_timeout(shared.now()),
            // Down: the connection just drops, as if the process died.
            _ = down.wait_for(|down| *down) => return,
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Applies `lie` to `reply`; true if it changed anything.
fn falsify(lie: Lie, reply: LesMessage) -> (LesMessage, bool) {
    let mut lied = false;
    let reply = match (lie, reply) {
        (Lie::Header, LesMessage::BlockHeaders(mut m)) => {
            for rlp in &mut m.headers {
                let Ok(header) = SealedHeader::decode(rlp) else { continue };
                let (mut header, _) = header.into_parts();
                header.timestamp += 1;
                *rlp = Bytes::from(alloy_rlp::encode(&header));
                lied = true;
            }
            LesMessage::BlockHeaders(m)
        }
        (Lie::Body, LesMessage::BlockBodies(mut m)) => {
            for rlp in &mut m.bodies {
                let Ok(body) = BlockBody::decode(rlp) else { continue };
                let (mut transactions, uncles, withdrawals) = body.into_parts();
                if transactions.pop().is_some() {
                    *rlp = Bytes::from(BlockBody::new(transactions, uncles, withdrawals).encode());
                    lied = true;
                }
            }
            LesMessage::BlockBodies(m)
        }
        (Lie::ReceiptStatus | Lie::ReceiptLog, LesMessage::Receipts(mut m)) => {
            for items in &mut m.receipts {
                let Ok(receipts) = BlockReceipts::from_items(items) else { continue };
                let mut receipts = receipts.into_receipts();
                for envelope in &mut receipts {
                    let Some(receipt) = envelope.as_receipt_with_bloom_mut() else { continue };
                    if lie == Lie::ReceiptStatus {
                        receipt.receipt.status =
                            Eip658Value::Eip658(!receipt.receipt.status.coerce_status());
                    } else if receipt.receipt.logs.pop().is_some() {
                        receipt.logs_bloom = logs_bloom(receipt.receipt.logs.iter());
                    } else {
                        continue;
                    }
                    lied = true;
                    break;
                }
                *items = receipts.iter().map(|r| Bytes::from(alloy_rlp::encode(r))).collect();
            }
            LesMessage::Receipts(m)
        }
        (Lie::ProofBalance, LesMessage::ProofsV2(mut m)) => {
            for node in &mut m.nodes {
                if let Some(forged) = richer_account_leaf(node) {
                    *node = forged;
                    lied = true;
                }
            }
            LesMessage::ProofsV2(m)
        }
        (Lie::ProofNode, LesMessage::ProofsV2(mut m)) => {
            lied = m.nodes.pop().is_some();
            LesMessage::ProofsV2(m)
        }
        (Lie::Code, LesMessage::ContractCodes(mut m)) => {
            for code in &mut m.codes {
                *code = [&code[..], &[0x00]].concat().into();
                lied = true;
            }
            LesMessage::ContractCodes(m)
        }
        (Lie::Empty, mut reply) => {
            lied = match &mut reply {
                LesMessage::BlockHeaders(m) => !std::mem::take(&mut m.headers).is_empty(),
                LesMessage::BlockBodies(m) => !std::mem::take(&mut m.bodies).is_empty(),
                LesMessage::Receipts(m) => !std::mem::take(&mut m.receipts).is_empty(),
                LesMessage::ProofsV2(m) => !std::mem::take(&mut m.nodes).is_empty(),
                LesMessage::ContractCodes(m) => !std::mem::take(&mut m.codes).is_empty(),
                _ => false,
            };
            reply
        }
        (_, reply) => reply,
    };
    (reply, lied)
}

/// If `node` is a trie leaf `[path, rlp(account)]`, the same leaf with a higher balance.
fn richer_account_leaf(node: &[u8]) -> Option<Bytes> {
    let [path, value] =
        <[Bytes; 2]>::try_from(alloy_rlp::decode_exact::<Vec<Bytes>>(node).ok()?).ok()?;
    let mut account: TrieAccount = alloy_rlp::decode_exact(&value).ok()?;
    account.balance += U256::from(1_000_000_000_000_000_000u64);
    Some(Bytes::from(alloy_rlp::encode(vec![path, Bytes::from(alloy_rlp::encode(account))])))
}
