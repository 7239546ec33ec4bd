//! Fuzz target: arbitrary bytes into the frame decoder. It must never panic, never claim a
//! frame longer than the bytes it was given, and every frame it decodes must encode back to
//! exactly the bytes it came from (so the decoder accepts nothing the encoder cannot say).
//! The entries of a decoded `LookupReply` are decoded too: never a panic, and every entry
//! that decodes encodes back to its bytes.
//!
//! The input is decoded twice: as it is (which mostly exercises the checks before the
//! checksum), and with the first frame's checksum rewritten to match, so that the fuzzer
//! also reaches the per-kind field and body checks behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_protocol::constants::HEADER_SIZE_BYTES;
use surge_protocol::{Frame, FrameDecoder, FrameError, LookupEntry, LookupStatus};

/// Offset and size of the header's checksum field.
const CHECKSUM_OFFSET: usize = 20;

fn decode_all(decoder: &FrameDecoder, data: &[u8]) {
    let mut rest = data;
    loop {
        match decoder.decode(rest) {
            Ok(Some((frame, size))) => {
                assert!(size <= rest.len());
                let mut again = Vec::new();
                frame.encode(&mut again);
                assert_eq!(again.as_slice(), &rest[..size]);
                check_entries(&frame);
                rest = &rest[size..];
            }
            Err(
                FrameError::Request {
                    frame_size_bytes, ..
                }
                | FrameError::Lookup {
                    frame_size_bytes, ..
                },
            ) => {
                assert!(frame_size_bytes <= rest.len());
                rest = &rest[frame_size_bytes..];
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = decoder.frame_size_needed(data);
}

/// Decodes every entry of a found lookup reply; those that decode must encode back.
fn check_entries(frame: &Frame<'_>) {
    let Frame::LookupReply(reply) = frame else {
        return;
    };
    let LookupStatus::Found(entries) = reply.status else {
        return;
    };
    let size = entries.operation().entry_size_bytes();
    for (bytes, entry) in entries.bytes().chunks_exact(size).zip(entries.iter()) {
        if let Ok(entry) = entry {
            let mut again = Vec::new();
            entry.encode(&mut again);
            assert_eq!(again.as_slice(), bytes);
            assert_eq!(LookupEntry::decode(entries.operation(), bytes), Ok(entry));
        }
    }
}

/// `data` with the first frame's checksum made to match its header and body.
fn resealed(data: &[u8]) -> Option<Vec<u8>> {
    let header = data.get(..HEADER_SIZE_BYTES)?;
    let body_size = u32::from_le_bytes(header[16..20].try_into().ok()?) as usize;
    let end = HEADER_SIZE_BYTES.checked_add(body_size)?.min(data.len());
    let mut bytes = data.to_vec();
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].fill(0);
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    Some(bytes)
}

fuzz_target!(|data: &[u8]| {
    // A small limit as well as the default, so the size checks are exercised both ways.
    for decoder in [FrameDecoder::default(), FrameDecoder::new(512)] {
        decode_all(&decoder, data);
        if let Some(bytes) = resealed(data) {
            decode_all(&decoder, &bytes);
        }
    }
});
