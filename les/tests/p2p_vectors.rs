//! The devp2p base protocol against official vectors (EIP-8 "devp2p Base Protocol" Hello)
//! and against the byte forms geth puts on the wire after Hello.

use alloy_primitives::hex;
use les::crypto::NodeKey;
use les::p2p::{self, BaseMessage, Capability, CapabilitySpec, DisconnectReason, Hello, PING_MSG};

/// EIP-8 (ethereum/EIPs commit 06df3ce6), "devp2p hello packet advertising version 22 and
/// containing a few additional list elements". Payload only, no message ID.
const EIP8_HELLO: [u8; 115] = hex!(
    "f87137916b6e6574682f76302e39312f706c616e39cdc5836574683dc6846d6f726b1682270fb840"
    "fda1cff674c90c9a197539fe3dfb53086ace64f83ed7c6eabec741f7f381cc803e52ab2cd55d5569"
    "bce4347107a310dfd5f88a010cd2ffd1005ca406f1842877c883666f6f836261720304"
);

/// EIP-8 "Static Key A"; its public key is the node ID inside the Hello vector.
const STATIC_KEY_A: [u8; 32] =
    hex!("49a7b37aa6f6645917e7b807e9d1c00d4fa71f18343b0d4122a4d2df64dd6fee");

#[test]
fn eip8_hello_vector_decodes_to_the_listed_values() {
    let hello = Hello::decode(&EIP8_HELLO).expect("EIP-8 Hello must decode");
    let static_a = NodeKey::from_bytes(&STATIC_KEY_A).unwrap().public_key();
    assert_eq!(
        hello,
        Hello {
            protocol_version: 55,
            client_id: "kneth/v0.91/plan9".to_owned(),
            capabilities: vec![
                Capability { name: "eth".to_owned(), version: 61 },
                Capability { name: "mork".to_owned(), version: 22 },
            ],
            listen_port: 9999,
            node_id: static_a,
        }
    );
    assert_eq!(hello.check_identity(&static_a), Ok(()));
    // Version 55 >= 5: a peer sending this Hello expects snappy.
    assert!(p2p::uses_snappy(hello.protocol_version));
}

#[test]
fn eip8_hello_without_its_extra_elements_is_what_we_encode() {
    // Our encoder drops nothing but the three trailing elements (`c883666f6f836261720304`
    // = ["foo", "bar"], 3, 4); re-encoding must give the vector minus those bytes, with
    // the outer length reduced accordingly.
    let hello = Hello::decode(&EIP8_HELLO).unwrap();
    let ours = hello.encode().unwrap();
    let extras = hex!("c883666f6f836261720304");
    let body = &EIP8_HELLO[2..EIP8_HELLO.len() - extras.len()];
    let mut expected = vec![0xf8, u8::try_from(body.len()).unwrap()];
    expected.extend_from_slice(body);
    assert_eq!(ours, expected);
    assert_eq!(Hello::decode(&ours), Ok(hello));
}

#[test]
fn our_hello_round_trips_through_frame_data() {
    let key = NodeKey::from_bytes(&STATIC_KEY_A).unwrap();
    let caps = [("les", 2), ("les", 3), ("les", 4)]
        .map(|(name, version)| Capability::new(name, version).unwrap())
        .to_vec();
    let hello = Hello::new("ulc/v0.1.0/wasm32", caps, key.public_key());
    let frame = p2p::encode_frame_data(p2p::HELLO_MSG, &hello.encode().unwrap());
    // Hello's ID 0 is the RLP empty string, and Hello is never compressed.
    assert_eq!(frame[0], 0x80);
    let (id, data) = p2p::decode_frame_data(&frame).unwrap();
    assert_eq!(BaseMessage::decode(id, data), Ok(BaseMessage::Hello(hello)));
}

#[test]
fn messages_after_hello_as_geth_sends_them() {
    // Ping after Hello with snappy: id 02, then compressed c0 = 01 00 c0.
    let ping = p2p::encode_frame_data(PING_MSG, &p2p::compress(&p2p::PING_PONG_PAYLOAD).unwrap());
    assert_eq!(ping, hex!("020100c0"));
    let (id, data) = p2p::decode_frame_data(&ping).unwrap();
    let data = p2p::decompress(data, p2p::MAX_UNCOMPRESSED_LEN).unwrap();
    assert_eq!(BaseMessage::decode(id, &data), Ok(BaseMessage::Ping));

    // Disconnect(too many peers) without snappy: 01 c1 04.
    let disc =
        p2p::encode_frame_data(p2p::DISCONNECT_MSG, &DisconnectReason::TooManyPeers.encode());
    assert_eq!(disc, hex!("01c104"));
}

#[test]
fn negotiating_with_the_eip8_peer() {
    // The EIP-8 peer speaks eth/61 and mork/22; a les-only node shares nothing.
    let hello = Hello::decode(&EIP8_HELLO).unwrap();
    let les_only = [CapabilitySpec { name: "les".into(), version: 4, message_count: 24 }];
    assert!(p2p::negotiate(&les_only, &hello.capabilities).is_empty());
    let with_eth = [
        CapabilitySpec { name: "les".into(), version: 4, message_count: 24 },
        CapabilitySpec { name: "eth".into(), version: 61, message_count: 8 },
    ];
    let shared = p2p::negotiate(&with_eth, &hello.capabilities);
    assert_eq!(shared.len(), 1);
    assert_eq!((shared[0].name.as_str(), shared[0].offset), ("eth", 0x10));
}
