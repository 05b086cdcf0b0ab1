//! lesd reached over WebSocket, the way a browser reaches it: through les-bridge to lesd's
//! TCP port, and directly on lesd's own `--ws` listener. Real anvil, real sockets; the
//! client is a `les::session::Session` speaking RLPx end to end over the WebSocket, so the
//! bridge only ever relays ciphertext.

mod common;
mod lesd_client;

use common::Anvil;
use futures_util::StreamExt;
use les::chain::SealedHeader;
use les::msg::{AnnounceType, BlockHashOrNumber, GetBlockHeaders, LesMessage, LesVersion};
use les::ulc::{Ulc, UlcConfig, UlcEvent};
use les_bridge::config::BridgeConfig;
use les_bridge::target::{AllowList, Target};
use les_bridge::ws::WsByteStream;
use lesd::daemon::Daemon;
use lesd_client::{ChainInfo, LesClient, WAIT, start_lesd};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Starts an in-process bridge allowing exactly `allowed`; returns its address.
async fn start_bridge(allowed: &[std::net::SocketAddr]) -> std::net::SocketAddr {
    let mut allow = AllowList::new();
    for addr in allowed {
        allow.insert(Target::from_socket_addr(*addr));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(les_bridge::serve(BridgeConfig::new(allow), listener, std::future::pending()));
    addr
}

/// Opens a client session over a WebSocket at `url`, signed announcements requested.
async fn connect_ws(url: &str, daemon: &Daemon) -> LesClient {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket opens");
    LesClient::establish(
        Box::new(WsByteStream::new(ws)),
        &daemon.enode(),
        &ChainInfo::of(daemon),
        AnnounceType::Signed,
        LesVersion::ALL.to_vec(),
    )
    .await
    .expect("RLPx and LES handshakes over WebSocket")
}

/// A signed head verified against lesd's node ID and accepted by the ULC rule, then the
/// whole chain fetched by number, verified back from that head, and compared with anvil.
async fn check_served_chain(client: &mut LesClient, daemon: &Daemon, anvil: &Anvil) {
    let announcement = client.announcement(WAIT).await.expect("signed head announcement");
    let signed = announcement.1.expect("signed, as asked");
    let mut ulc = Ulc::new(UlcConfig::new([daemon.enode()], 100).expect("config"));
    let events = ulc
        .on_announcement(daemon.enode().node_id(), signed.head, &signed.signature, 0)
        .expect("trusted and correctly signed");
    assert!(matches!(events.as_slice(), [UlcEvent::HeadAccepted { .. }]));
    let head = signed.head;

    let reply = client
        .request(|request_id| {
            LesMessage::GetBlockHeaders(GetBlockHeaders {
                request_id,
                origin: BlockHashOrNumber::Number(0),
                max_headers: head.number + 1,
                skip: 0,
                reverse: false,
            })
        })
        .await
        .expect("headers");
    let LesMessage::BlockHeaders(reply) = reply else { panic!("not headers: {reply:?}") };
    let headers: Vec<SealedHeader> =
        reply.headers.iter().map(|rlp| SealedHeader::decode(rlp).expect("header")).collect();
    let tip = headers.last().expect("tip");
    assert_eq!(tip.hash(), head.hash, "the tip is the accepted head");
    let parents: Vec<SealedHeader> = headers.iter().rev().skip(1).cloned().collect();
    les::chain::verify_chain(&parents, tip).expect("parent links");
    for header in &headers {
        let block = anvil
            .rpc("eth_getBlockByNumber", json!([format!("{:#x}", header.number()), false]))
            .await;
        assert_eq!(block["hash"].as_str(), Some(format!("{:#x}", header.hash()).as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesd_through_les_bridge_and_on_its_own_websocket() {
    let anvil = Anvil::spawn();
    anvil.mine(3).await;
    let daemon = start_lesd(anvil.url(), true).await;
    let mut heads = daemon.heads();
    tokio::time::timeout(
        WAIT,
        heads.wait_for(|h| h.as_ref().is_some_and(|h| h.header.number() >= 3)),
    )
    .await
    .expect("lesd follows anvil")
    .expect("head channel open");

    // Through the bridge to lesd's TCP port.
    let bridge = start_bridge(&[daemon.local_addr()]).await;
    let url = format!("ws://{bridge}/{}", daemon.local_addr());
    let mut via_bridge = connect_ws(&url, &daemon).await;
    check_served_chain(&mut via_bridge, &daemon, &anvil).await;

    // Directly on lesd --ws.
    let ws = daemon.ws_addr().expect("lesd --ws listening");
    let mut direct = connect_ws(&format!("ws://{ws}/"), &daemon).await;
    check_served_chain(&mut direct, &daemon, &anvil).await;

    // A target that is not on the bridge's allow-list (here: lesd's WebSocket port) is
    // refused with a policy-violation close whose reason names the target.
    let refused = format!("ws://{bridge}/{ws}");
    let (mut socket, _) = tokio_tungstenite::connect_async(&refused).await.expect("upgrade");
    let close = tokio::time::timeout(WAIT, socket.next()).await.expect("answer in time");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert!(frame.reason.contains(&ws.to_string()), "reason: {}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    daemon.shutdown().await;
}
