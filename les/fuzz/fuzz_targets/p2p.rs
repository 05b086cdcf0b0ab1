//! The devp2p base protocol decoders: Hello, Disconnect (strict and lenient), frame data,
//! snappy (capped at the LES message size) and `BaseMessage` dispatch.
#![no_main]

use les::msg::MAX_MESSAGE_SIZE;
use les::p2p::{self, BaseMessage, DisconnectReason, Hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(hello) = Hello::decode(input) {
        let encoded = hello.encode().expect("a decoded Hello re-encodes");
        assert_eq!(Hello::decode(&encoded).expect("re-decodes"), hello);
        let _ = hello.check_identity(&hello.node_id);
    }
    if let Ok(reason) = DisconnectReason::decode(input) {
        assert_eq!(DisconnectReason::decode(&reason.encode()).expect("re-decodes"), reason);
    }
    let _ = DisconnectReason::decode_lenient(input);
    if let Ok((id, data)) = p2p::decode_frame_data(input) {
        assert_eq!(p2p::encode_frame_data(id, data), input, "frame data is canonical");
        if let Ok(message) = BaseMessage::decode(id, data) {
            assert_eq!(message.id(), id);
            if let Ok(again) = message.encode_data() {
                assert_eq!(BaseMessage::decode(id, &again).expect("re-decodes"), message);
            }
        }
        if let Ok(plain) = p2p::decompress(data, MAX_MESSAGE_SIZE) {
            assert!(plain.len() <= MAX_MESSAGE_SIZE);
        }
    }
    if let Ok(plain) = p2p::decompress(input, MAX_MESSAGE_SIZE) {
        assert!(plain.len() <= MAX_MESSAGE_SIZE);
        let again = p2p::compress(&plain).expect("compresses");
        assert_eq!(p2p::decompress(&again, MAX_MESSAGE_SIZE).expect("round trip"), plain);
    }
});
