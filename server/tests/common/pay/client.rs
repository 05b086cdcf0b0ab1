//! A native client that speaks `lespay/1` beside LES over TCP, for the tests of lesd's
//! service model: it drives a `les::session::Session` (client role) by hand so a test sees
//! every lespay message, disconnect and flow-control change the server sends.
//!
//! It knows nothing about how the server runs, so the same client talks to an in-process
//! [`lesd::daemon::Daemon`] and to the real `lesd` binary in a child process.

use les::crypto::{Enode, NodeId, NodeKey};
use les::flow::FlowParams;
use les::msg::{AnnounceType, BlockHashOrNumber, ForkSchedule, GetBlockHeaders, LesMessage};
use les::p2p::DisconnectReason;
use les::pay::messages::{self, Balance, IntOrInf, LESPAY, LespayMessage};
use les::session::{ClientConfig, Event, Role, Session, SessionConfig};
use les::time::Timestamp;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default wait for anything the server should do promptly (a bound that fails a test
/// instead of hanging it, never a performance assertion).
pub const WAIT: Duration = Duration::from_secs(10);

/// What a client needs to pass the server's Status check: the network id and the fork
/// schedule lesd derives from its upstream's genesis.
#[derive(Debug, Clone)]
pub struct PayChain {
    /// Status `networkId`.
    pub network_id: u64,
    /// Genesis hash and forks.
    pub schedule: ForkSchedule,
}

impl PayChain {
    /// The chain of the upstream at `url`, as a lesd in front of it presents it.
    pub async fn of_upstream(url: &str) -> Self {
        let upstream = lesd::upstream::Upstream::connect(url, None).await.expect("upstream");
        let config = lesd::node::NodeConfig::new(
            NodeKey::random().expect("rng"),
            upstream.network_id(),
            upstream.genesis(),
            les::session::ServeOffer::ARCHIVE,
        );
        Self { network_id: upstream.network_id(), schedule: config.fork_schedule }
    }
}

/// A client speaking LES and lespay/1, driven over TCP.
pub struct PayClient {
    /// The client's session.
    pub session: Session,
    /// The TCP connection to the server.
    pub stream: TcpStream,
    /// The session clock's zero.
    pub start: Instant,
    /// Events received and not yet consumed.
    pub events: VecDeque<Event>,
    /// The last request id used.
    pub next_id: u64,
    /// The client's node id.
    pub node_id: NodeId,
}

impl PayClient {
    /// Connects to the lesd at `enode` (on the chain `chain` describes) with node key `key`
    /// and offers lespay/1; Err when the server refuses or drops us during admission.
    pub async fn connect_to(
        enode: &Enode,
        chain: &PayChain,
        key: NodeKey,
    ) -> Result<Self, DisconnectReason> {
        let stream =
            TcpStream::connect(enode.socket_addr().expect("address")).await.expect("tcp connect");
        let _ = stream.set_nodelay(true);
        let node_id = les::crypto::node_id(&key.public_key());
        let role =
            Role::Client(ClientConfig { announce_type: AnnounceType::Simple, trusted: true });
        let mut config = SessionConfig::new(key, role, chain.network_id, chain.schedule.clone());
        config.extra_capabilities = vec![messages::capability()];
        let session =
            Session::connect(config, enode.public_key, Timestamp::from_nanos(0)).expect("session");
        let mut client = Self {
            session,
            stream,
            start: Instant::now(),
            events: VecDeque::new(),
            next_id: 0,
            node_id,
        };
        match client.wait(|e| matches!(e, Event::Established(_)), WAIT).await {
            Ok(Event::Established(info)) => {
                assert!(
                    info.capabilities.iter().any(|c| c.name == LESPAY),
                    "lesd offers lespay by default"
                );
            }
            Ok(_) => unreachable!(),
            Err(reason) => return Err(reason),
        }
        // The server admits (or refuses) right after Status; give a refusal time to arrive.
        client.pump_for(Duration::from_millis(200)).await?;
        Ok(client)
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).expect("ns"))
    }

    pub async fn flush(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            if self.stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }

    /// Reads once (at most `wait`) and queues the events.
    pub async fn pump(&mut self, wait: Duration) {
        self.flush().await;
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                if !self.session.is_closed() {
                    self.session.disconnect(DisconnectReason::NetworkError);
                }
            }
            Ok(Ok(n)) => {
                let now = self.now();
                self.session.handle_input(&buf[..n], now);
            }
            Err(_) => {}
        }
        let now = self.now();
        if self.session.poll_timeout().is_some_and(|at| at <= now) {
            self.session.handle_timeout(now);
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push_back(event);
        }
        self.flush().await;
    }

    /// Services the connection for `duration`; Err if it was disconnected meanwhile.
    pub async fn pump_for(&mut self, duration: Duration) -> Result<(), DisconnectReason> {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            if let Some(reason) = self.disconnect_reason() {
                return Err(reason);
            }
            self.pump(Duration::from_millis(20)).await;
        }
        self.disconnect_reason().map_or(Ok(()), Err)
    }

    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.events.iter().find_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    /// The first queued or arriving event matching `wanted`; Err(reason) once disconnected.
    pub async fn wait(
        &mut self,
        wanted: impl Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, DisconnectReason> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(index) = self.events.iter().position(&wanted) {
                return Ok(self.events.remove(index).expect("present"));
            }
            if let Some(reason) = self.disconnect_reason() {
                return Err(reason);
            }
            assert!(Instant::now() < deadline, "timed out waiting for an event");
            self.pump(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the server disconnects us; the reason.
    pub async fn disconnected(&mut self, timeout: Duration) -> DisconnectReason {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(reason) = self.disconnect_reason() {
                return reason;
            }
            assert!(Instant::now() < deadline, "not disconnected in time");
            self.pump(Duration::from_millis(50)).await;
        }
    }

    pub fn req_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub async fn send_raw(&mut self, code: u64, payload: &[u8]) {
        self.session.send_capability_message(LESPAY, code, payload).expect("lespay negotiated");
        self.flush().await;
    }

    pub async fn send(&mut self, message: &LespayMessage) {
        let (code, payload) = message.encode();
        self.send_raw(code, &payload).await;
    }

    /// The next lespay message matching `wanted`.
    pub async fn lespay(&mut self, wanted: impl Fn(&LespayMessage) -> bool) -> LespayMessage {
        let event = self
            .wait(
                |e| match e {
                    Event::CapabilityMessage { capability, code, payload }
                        if capability == LESPAY =>
                    {
                        LespayMessage::decode(*code, payload).is_ok_and(|m| wanted(&m))
                    }
                    _ => false,
                },
                WAIT,
            )
            .await
            .expect("connected");
        let Event::CapabilityMessage { code, payload, .. } = event else { unreachable!() };
        LespayMessage::decode(code, &payload).expect("decodes")
    }

    /// Sends a request built around a fresh id and waits for the message answering it.
    pub async fn call(&mut self, build: impl FnOnce(u64) -> LespayMessage) -> LespayMessage {
        let id = self.req_id();
        self.send(&build(id)).await;
        self.lespay(|m| m.req_id() == Some(id)).await
    }

    pub async fn balance(&mut self) -> Balance {
        match self.call(|req_id| LespayMessage::BalanceQuery { req_id }).await {
            LespayMessage::BalanceReply { balance, .. } => balance,
            other => panic!("not a BalanceReply: {other:?}"),
        }
    }

    pub async fn capacity_query(&mut self, add: &[u64]) -> Vec<u64> {
        let add_tokens =
            add.iter().map(|&a| IntOrInf::Pos(alloy_primitives::U256::from(a))).collect();
        match self
            .call(|req_id| LespayMessage::CapacityQuery { req_id, bias_secs: 0, add_tokens })
            .await
        {
            LespayMessage::CapacityReply { capacities, .. } => capacities,
            other => panic!("not a CapacityReply: {other:?}"),
        }
    }

    pub fn server_params(&self) -> FlowParams {
        self.session.server_buffer().expect("client side").params().clone()
    }

    /// A header request answered: the server is still serving us.
    pub async fn headers_served(&mut self) -> bool {
        let id = self.req_id();
        let request = LesMessage::GetBlockHeaders(GetBlockHeaders {
            request_id: id,
            origin: BlockHashOrNumber::Number(0),
            max_headers: 1,
            skip: 0,
            reverse: false,
        });
        let now = self.now();
        self.session.send_request(request, now).expect("within budget");
        self.flush().await;
        matches!(
            self.wait(|e| matches!(e, Event::Reply(r) if r.request_id() == Some(id)), WAIT).await,
            Ok(Event::Reply(LesMessage::BlockHeaders(reply))) if reply.headers.len() == 1
        )
    }
}

/// One call to lesd's admin JSON-RPC endpoint at `addr`; the whole response object.
pub async fn admin_call(
    addr: std::net::SocketAddr,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    reqwest::Client::new()
        .post(format!("http://{addr}/"))
        .timeout(Duration::from_secs(60))
        .json(&body)
        .send()
        .await
        .expect("admin reachable")
        .json()
        .await
        .expect("JSON answer")
}
