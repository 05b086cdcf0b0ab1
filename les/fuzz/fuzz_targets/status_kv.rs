//! Status, key/value lists and Announce (with its signature entry). Decoded values
//! re-encode stably.
#![no_main]

use alloy_rlp::Encodable;
use les::msg::{Announce, KvList, LesMessage, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(status) = Status::decode(input) {
        let encoded = alloy_rlp::encode(&status);
        let again = Status::decode(&encoded).expect("re-encoded Status decodes");
        assert_eq!(again, status);
        let _ = status.to_kv().accounted_size();
    }
    if let Ok(list) = KvList::decode(input) {
        let mut encoded = Vec::with_capacity(list.length());
        list.encode(&mut encoded);
        assert_eq!(KvList::decode(&encoded).expect("re-encoded list decodes"), list);
        let _ = list.accounted_size();
    }
    if let Ok(announce) = Announce::decode(input) {
        let _ = announce.signature();
        let _ = announce.head_td_within_limit();
        let encoded = LesMessage::Announce(announce.clone()).encode();
        assert_eq!(Announce::decode(&encoded).expect("re-encoded Announce decodes"), announce);
    }
});
