//! `LesMessage::decode` for every version and code: the first byte picks the version (its
//! top two bits) and the code (its low five bits, 0..0x20); the rest is the payload. A
//! decoded message re-encodes to something that decodes to the same message.
#![no_main]

use les::msg::{LesMessage, LesVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, payload)) = input.split_first() else { return };
    let version = LesVersion::ALL[usize::from(selector >> 6) % LesVersion::ALL.len()];
    let code = u64::from(selector & 0x1f);
    let Ok(message) = LesMessage::decode(version, code, payload) else { return };
    assert_eq!(message.code(), code);
    let encoded = message.encode();
    let again = LesMessage::decode(version, code, &encoded).expect("re-encoding decodes");
    assert_eq!(again, message, "round trip changed the message");
    assert_eq!(again.encode(), encoded, "encoding is not stable");
    let _ = message.as_request().map(|r| (r.item_count(), r.within_limits()));
});
