//! The protocol core end to end over real TCP on 127.0.0.1 (`make demo`).
//!
//! Three LES servers, each with its own node key, serve a small synthetic header chain and
//! announce its head signed. A light client dials all three through the sans-IO
//! [`Session`], checks every announcement signature against the server's RLPx-authenticated
//! node ID, accepts the head once the ULC quorum is reached, then fetches the headers from
//! one server and verifies them by hash and parent links back to the accepted head.
//!
//! The drivers here are deliberately thin (blocking sockets, one thread per connection):
//! they only move bytes and time in and out of the state machines. The real server (`lesd`)
//! and the browser client (`ulc`) are the same pattern with tokio and WebSocket.

use alloy_consensus::Header;
use alloy_primitives::{B256, U256, keccak256};
use les::announce::AnnouncedHead;
use les::chain::{SealedHeader, verify_chain};
use les::crypto::{Enode, NodeKey};
use les::flow::FlowParams;
use les::msg::{
    AnnounceType, BlockHashOrNumber, BlockHeaders, ForkSchedule, GetBlockHeaders, LesMessage,
};
use les::session::{ClientConfig, Event, Role, ServeOffer, ServerConfig, Session, SessionConfig};
use les::time::Timestamp;
use les::ulc::{Ulc, UlcConfig, UlcEvent};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const NETWORK_ID: u64 = 31337;
const CHAIN_LENGTH: u64 = 16;

fn schedule() -> ForkSchedule {
    ForkSchedule::new(keccak256(b"loopback demo genesis"), 0, [], [])
}

fn demo_chain() -> Vec<SealedHeader> {
    let mut chain: Vec<SealedHeader> = Vec::new();
    for number in 0..CHAIN_LENGTH {
        let header = Header {
            parent_hash: chain.last().map_or(B256::ZERO, SealedHeader::hash),
            number,
            gas_limit: 30_000_000,
            timestamp: 1_700_000_000 + 2 * number,
            base_fee_per_gas: Some(1_000_000_000),
            ..Default::default()
        };
        chain.push(SealedHeader::seal(header));
    }
    chain
}

fn session_config(key: NodeKey, role: Role, name: &str) -> SessionConfig {
    SessionConfig {
        client_id: format!("{name}/loopback-demo"),
        ..SessionConfig::new(key, role, NETWORK_ID, schedule())
    }
}

/// The driver's clock: monotonic time since the demo started.
fn now(start: Instant) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// Moves bytes between a socket and a session, fires timers, and hands events to
/// `on_event` (which may act on the session). Returns when the session closes or
/// `on_event` says so.
fn drive(
    stream: &mut TcpStream,
    session: &mut Session,
    start: Instant,
    mut on_event: impl FnMut(&mut Session, Event, Timestamp) -> bool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(bytes) = session.poll_transmit() {
            stream.write_all(&bytes)?;
        }
        while let Some(event) = session.poll_event() {
            if !on_event(session, event, now(start)) {
                while let Some(bytes) = session.poll_transmit() {
                    stream.write_all(&bytes)?;
                }
                return Ok(());
            }
        }
        if session.is_closed() {
            return Ok(());
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => session.handle_input(&buf[..n], now(start)),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if session.poll_timeout().is_some_and(|at| at <= now(start)) {
            session.handle_timeout(now(start));
        }
    }
}

/// One server: accepts a single client, announces its head signed, serves header requests.
fn run_server(listener: TcpListener, key: NodeKey, chain: Vec<SealedHeader>, start: Instant) {
    let Ok((mut stream, _)) = listener.accept() else { return };
    let tip = chain.last().cloned().expect("demo chain is not empty");
    let head = AnnouncedHead { hash: tip.hash(), number: tip.number(), td: U256::from(1u64) };
    let role = Role::Server(ServerConfig {
        head,
        flow: FlowParams::geth_default(),
        offer: ServeOffer::ARCHIVE,
    });
    let Ok(mut session) = Session::accept(session_config(key.clone(), role, "server"), now(start))
    else {
        return;
    };
    let announcement = head.signed(&key);
    let result = drive(&mut stream, &mut session, start, |session, event, at| {
        match event {
            Event::Established(_) => {
                // Our servers announce their current head right after Status, signed for
                // clients that asked for signatures (the Status head itself is unsigned).
                let _ = session.announce(&announcement, 0);
            }
            Event::Request { ticket, request: LesMessage::GetBlockHeaders(query) } => {
                let served = match query.origin {
                    BlockHashOrNumber::Number(first) => chain
                        .iter()
                        .skip(usize::try_from(first).unwrap_or(usize::MAX))
                        .step_by(usize::try_from(query.skip).unwrap_or(0).saturating_add(1))
                        .take(usize::try_from(query.max_headers).unwrap_or(0))
                        .map(|h| h.encoded().into())
                        .collect(),
                    BlockHashOrNumber::Hash(_) => Vec::new(),
                };
                let reply = LesMessage::BlockHeaders(BlockHeaders {
                    request_id: query.request_id,
                    buffer_value: 0,
                    headers: served,
                });
                let _ = session.reply(ticket, reply, 200_000, at);
            }
            Event::Disconnected { .. } => return false,
            _ => {}
        }
        true
    });
    if let Err(error) = result {
        eprintln!("server connection error: {error}");
    }
}

/// What one client connection reports to the client's main loop.
enum Report {
    Announcement { server: usize, head: les::announce::SignedAnnouncement },
    Headers { server: usize, headers: Vec<SealedHeader> },
    Failed { server: usize, why: String },
}

fn main() {
    let start = Instant::now();
    let chain = demo_chain();
    println!("les loopback demo: 3 LES servers and 1 ULC client over TCP on 127.0.0.1\n");

    // Start three servers with distinct node keys; their enode URLs are the trust config.
    let mut enodes = Vec::new();
    for _ in 0..3 {
        let key = NodeKey::random().expect("system randomness");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("bound").port();
        let enode = Enode { public_key: key.public_key(), host: "127.0.0.1".into(), port };
        println!("server {}: {enode}", enodes.len());
        enodes.push(enode);
        let chain = chain.clone();
        thread::spawn(move || run_server(listener, key, chain, start));
    }

    let fraction = 75;
    let config = UlcConfig::new(enodes.iter().cloned(), fraction).expect("three trusted servers");
    println!(
        "\nclient trusts {} servers at {}%: a head needs {} signed announcements\n",
        config.trusted_count(),
        config.fraction(),
        config.quorum_size()
    );
    let mut ulc = Ulc::new(config);

    // One connection per server; the first server is also asked for headers.
    let (reports, inbox) = mpsc::channel();
    for (index, enode) in enodes.iter().enumerate() {
        let reports = reports.clone();
        let enode = enode.clone();
        thread::spawn(move || {
            let fail = |why: String| {
                let _ = reports.send(Report::Failed { server: index, why });
            };
            let Some(addr) = enode.socket_addr() else { return fail("no address".into()) };
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => return fail(e.to_string()),
            };
            let role =
                Role::Client(ClientConfig { announce_type: AnnounceType::Signed, trusted: true });
            let config = session_config(NodeKey::random().expect("rng"), role, "client");
            let mut session = match Session::connect(config, enode.public_key, now(start)) {
                Ok(session) => session,
                Err(e) => return fail(e.to_string()),
            };
            let result = drive(&mut stream, &mut session, start, |session, event, at| {
                match event {
                    Event::Established(info) => {
                        println!(
                            "connected to server {index}: {} ({}, node id {})",
                            info.client_id, info.version, info.node_id
                        );
                        if index == 0 {
                            let query = LesMessage::GetBlockHeaders(GetBlockHeaders {
                                request_id: 1,
                                origin: BlockHashOrNumber::Number(0),
                                max_headers: CHAIN_LENGTH,
                                skip: 0,
                                reverse: false,
                            });
                            if let Err(e) = session.send_request(query, at) {
                                let _ = reports
                                    .send(Report::Failed { server: index, why: e.to_string() });
                            }
                        }
                    }
                    Event::Announcement { signed: Some(head), .. } => {
                        let _ = reports.send(Report::Announcement { server: index, head });
                    }
                    Event::Reply(LesMessage::BlockHeaders(reply)) => {
                        let headers: Result<Vec<_>, _> =
                            reply.headers.iter().map(|rlp| SealedHeader::decode(rlp)).collect();
                        let report = match headers {
                            Ok(headers) => Report::Headers { server: index, headers },
                            Err(e) => Report::Failed { server: index, why: e.to_string() },
                        };
                        let _ = reports.send(report);
                    }
                    Event::Disconnected { reason, error, .. } => {
                        let why = format!("disconnected: {reason} {error:?}");
                        let _ = reports.send(Report::Failed { server: index, why });
                        return false;
                    }
                    _ => {}
                }
                true
            });
            if let Err(e) = result {
                fail(e.to_string());
            }
        });
    }
    drop(reports);

    let mut accepted: Option<B256> = None;
    let mut fetched: Option<Vec<SealedHeader>> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.is_none() || fetched.is_none() {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            eprintln!("demo timed out");
            std::process::exit(1);
        };
        let Ok(report) = inbox.recv_timeout(wait) else {
            eprintln!("demo timed out");
            std::process::exit(1);
        };
        match report {
            Report::Announcement { server, head } => {
                let node = enodes[server].node_id();
                println!(
                    "server {server} announced #{} {} (signature verified)",
                    head.head.number, head.head.hash
                );
                match ulc.on_announcement(node, head.head, &head.signature, 0) {
                    Ok(events) => {
                        for event in events {
                            if let UlcEvent::HeadAccepted { head, evidence } = event {
                                println!(
                                    "\nULC quorum reached: head #{} {} accepted on {} signatures\n",
                                    head.number,
                                    head.hash,
                                    evidence.len()
                                );
                                accepted = Some(head.hash);
                            }
                        }
                    }
                    Err(e) => println!("announcement refused: {e}"),
                }
            }
            Report::Headers { server, headers } => {
                println!("server {server} sent {} headers", headers.len());
                fetched = Some(headers);
            }
            Report::Failed { server, why } => {
                if accepted.is_none() || fetched.is_none() {
                    eprintln!("server {server}: {why}");
                }
            }
        }
    }

    let (Some(head), Some(headers)) = (accepted, fetched) else { return };
    let Some(tip) = headers.last() else {
        eprintln!("no headers");
        std::process::exit(1);
    };
    if tip.hash() != head {
        eprintln!("the served tip does not hash to the accepted head");
        std::process::exit(1);
    }
    let parents: Vec<SealedHeader> = headers.iter().rev().skip(1).cloned().collect();
    match verify_chain(&parents, tip) {
        Ok(()) => println!(
            "verified {} headers: the tip hashes to the accepted head and every parent hash links back to genesis {}",
            headers.len(),
            headers[0].hash()
        ),
        Err(e) => {
            eprintln!("header chain does not verify: {e}");
            std::process::exit(1);
        }
    }
    println!("\ndemo finished in {:?}", start.elapsed());
}
