//! The RLPx frame reader fed arbitrary bytes in arbitrary chunks (mode bit 0 clear), or a
//! valid frame stream built from the input and then mutated (mode bit 0 set). No panic, no
//! stall, and nothing returned larger than the configured maximum frame size.
#![no_main]

use les_fuzz::peer::{SESSION_MAX_FRAME_SIZE, chunked, fixed_frame_pair, read_chunked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, input)) = input.split_first() else { return };
    let (mut writer, mut reader) = fixed_frame_pair(SESSION_MAX_FRAME_SIZE);
    let (sizes, data) = chunked(input);
    if mode & 1 == 0 {
        if let Ok(frames) = read_chunked(&mut reader, &sizes, data) {
            assert!(frames.iter().all(|f| f.len() <= SESSION_MAX_FRAME_SIZE));
        }
        return;
    }
    // Valid stream: the data split at 0xff bytes into frames, each written by the
    // matching writer; then up to 8 mutations `(position u16, xor byte)` taken from the
    // input's tail (mode bits 1..=3 say how many).
    let mutations = usize::from((mode >> 1) & 0x07);
    let split = data.len().saturating_sub(mutations * 3);
    let (payload, mutation_bytes) = data.split_at(split);
    let mut stream = Vec::new();
    let mut originals = Vec::new();
    for frame_data in payload.split(|&b| b == 0xff) {
        let frame = writer.write_frame(frame_data).expect("small frames are writable");
        stream.extend_from_slice(&frame);
        originals.push(frame_data.to_vec());
    }
    for m in mutation_bytes.chunks_exact(3) {
        if stream.is_empty() {
            break;
        }
        let position = usize::from(u16::from_be_bytes([m[0], m[1]])) % stream.len();
        stream[position] ^= m[2].max(1);
    }
    match read_chunked(&mut reader, &sizes, &stream) {
        Ok(frames) => {
            // Only an unmutated stream can pass every MAC; it must read back exactly.
            assert_eq!(frames, originals, "frames passed the MAC but differ");
        }
        Err(_) => assert!(mutations > 0, "an unmutated stream failed to read"),
    }
});
