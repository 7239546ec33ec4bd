//! Frame decoding, case by case: every kind round-trips, and every documented way bytes
//! fail to be a frame gives its error (and code), never a panic.

use surge_core::{Batch, Operation, ResultCode, Transfer, TransferId};
use surge_protocol::constants::{FRAME_BODY_SIZE_BYTES_MAX, HEADER_SIZE_BYTES, MAGIC};
use surge_protocol::constants::{MESSAGE_SIZE_BYTES_MAX, REQUEST_COMMANDS_MAX};
use surge_protocol::{encode_batch, encode_reply_codes, encode_request, ErrorCode, Frame};
use surge_protocol::{FrameDecoder, FrameError, Hello, Message, Reply, ReplyStatus};
use surge_protocol::{RequestError, Scopes, Welcome};

fn encoded(frame: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out);
    out
}

fn decode(bytes: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    FrameDecoder::default().decode(bytes)
}

/// Rewrites the checksum after a test changed header fields.
fn reseal(bytes: &mut [u8]) {
    bytes[20..24].fill(0);
    let crc = crc32c::crc32c(bytes);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
}

fn transfers(count: usize) -> Vec<Transfer> {
    (0..count)
        .map(|index| Transfer {
            id: TransferId(index as u128 + 1),
            amount: 10,
            ..Default::default()
        })
        .collect()
}

#[test]
fn every_kind_round_trips() {
    let frames = [
        Frame::Hello(Hello {
            client_id: 7,
            token: b"secret",
        }),
        Frame::Welcome(Welcome {
            scopes: Scopes::PAYMENTS,
            frame_body_size_bytes_max: 1000,
            requests_in_flight_max: 64,
            request_commands_max: 8190,
            idle_timeout_ms: 30_000,
        }),
        Frame::HandshakeError(Message {
            request_id: 0,
            code: ErrorCode::Unauthorized,
            message: "no",
        }),
        Frame::Error(Message {
            request_id: 9,
            code: ErrorCode::BadChecksum,
            message: "bad",
        }),
        Frame::Reply(Reply {
            request_id: 3,
            operation: 2,
            status: ReplyStatus::Busy,
        }),
        Frame::Reply(Reply {
            request_id: 4,
            operation: 99,
            status: ReplyStatus::Rejected(ErrorCode::UnknownOperation),
        }),
        Frame::Ping { request_id: 5 },
        Frame::Pong { request_id: 5 },
    ];
    for frame in frames {
        let bytes = encoded(frame);
        assert_eq!(decode(&bytes), Ok(Some((frame, bytes.len()))));
    }
}

#[test]
fn requests_and_replies_round_trip() {
    let records = transfers(3);
    let mut bytes = Vec::new();
    encode_batch(&mut bytes, 11, Batch::CreateTransfers(&records));
    let (frame, size) = decode(&bytes).unwrap().unwrap();
    assert_eq!(size, HEADER_SIZE_BYTES + 3 * 128);
    let Frame::Request(request) = frame else {
        panic!("not a request: {frame:?}");
    };
    assert_eq!(request.request_id, 11);
    assert_eq!(request.operation, Operation::CreateTransfers);
    assert_eq!(request.count, 3);
    let batch = surge_core::decode(request.operation as u8, request.body).unwrap();
    assert_eq!(
        batch.as_batch().body(),
        Batch::CreateTransfers(&records).body()
    );

    let codes = [
        ResultCode::Ok,
        ResultCode::Exists,
        ResultCode::ExceedsCredits,
    ];
    let mut bytes = Vec::new();
    encode_reply_codes(&mut bytes, 11, 2, &codes);
    let Some((Frame::Reply(reply), _)) = decode(&bytes).unwrap() else {
        panic!("not a reply");
    };
    let ReplyStatus::Ok(decoded) = reply.status else {
        panic!("not ok");
    };
    assert_eq!(decoded.to_vec(), Ok(codes.to_vec()));
}

#[test]
fn frames_decode_one_at_a_time_from_a_stream() {
    let mut bytes = encoded(Frame::Ping { request_id: 1 });
    bytes.extend(encoded(Frame::Pong { request_id: 2 }));
    let (first, size) = decode(&bytes).unwrap().unwrap();
    assert_eq!(first, Frame::Ping { request_id: 1 });
    let (second, _) = decode(&bytes[size..]).unwrap().unwrap();
    assert_eq!(second, Frame::Pong { request_id: 2 });
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let records = transfers(2);
    let mut bytes = Vec::new();
    encode_batch(&mut bytes, 1, Batch::CreateTransfers(&records));
    for end in 0..bytes.len() {
        assert_eq!(decode(&bytes[..end]), Ok(None), "prefix of {end} bytes");
    }
    assert_eq!(
        FrameDecoder::default().frame_size_needed(&bytes[..HEADER_SIZE_BYTES]),
        Ok(Some(bytes.len()))
    );
}

#[test]
fn garbage_is_bad_magic_at_once() {
    assert_eq!(
        decode(b"GET / HTTP/1.1\r\n"),
        Err(FrameError::BadMagic { found: *b"GET " })
    );
    let error = decode(b"SX").unwrap_err();
    assert_eq!(error.code(), ErrorCode::BadMagic);
    assert!(error.is_fatal());
}

#[test]
fn wrong_version_is_refused() {
    let mut bytes = encoded(Frame::Ping { request_id: 1 });
    bytes[4] = 2;
    assert_eq!(
        decode(&bytes[..6]),
        Err(FrameError::UnsupportedVersion { found: 2 })
    );
    assert_eq!(
        decode(&bytes).unwrap_err().code(),
        ErrorCode::UnsupportedVersion
    );
}

#[test]
fn oversized_frames_are_refused_from_the_header_alone() {
    let mut header = [0u8; HEADER_SIZE_BYTES];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = 1;
    header[6] = 4;
    header[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode(&header),
        Err(FrameError::TooLarge {
            body_size: u32::MAX,
            max: FRAME_BODY_SIZE_BYTES_MAX
        })
    );
    let small = FrameDecoder::new(64);
    let records = transfers(1);
    let mut bytes = Vec::new();
    encode_batch(&mut bytes, 1, Batch::CreateTransfers(&records));
    assert_eq!(
        small.decode(&bytes).unwrap_err().code(),
        ErrorCode::FrameTooLarge
    );
}

#[test]
fn a_flipped_bit_is_a_bad_checksum() {
    let records = transfers(1);
    let mut bytes = Vec::new();
    encode_batch(&mut bytes, 1, Batch::CreateTransfers(&records));
    bytes[HEADER_SIZE_BYTES + 5] ^= 1;
    assert_eq!(decode(&bytes).unwrap_err().code(), ErrorCode::BadChecksum);
}

#[test]
fn unknown_kinds_and_flags_are_fatal() {
    let mut bytes = encoded(Frame::Ping { request_id: 1 });
    bytes[6] = 42;
    reseal(&mut bytes);
    assert_eq!(decode(&bytes), Err(FrameError::UnknownKind { kind: 42 }));
    let mut bytes = encoded(Frame::Ping { request_id: 1 });
    bytes[7] = 1;
    reseal(&mut bytes);
    assert_eq!(
        decode(&bytes).unwrap_err().code(),
        ErrorCode::ReservedNotZero
    );
}

fn request_error(operation: u8, count: u32, body: &[u8]) -> FrameError {
    let mut bytes = Vec::new();
    encode_request(&mut bytes, 77, Operation::CreateTransfers, count, &[body]);
    bytes[24] = operation;
    reseal(&mut bytes);
    let error = decode(&bytes).unwrap_err();
    assert!(!error.is_fatal(), "{error}");
    let FrameError::Request {
        request_id,
        frame_size_bytes,
        ..
    } = error
    else {
        panic!("not a request error: {error}");
    };
    assert_eq!(request_id, 77);
    assert_eq!(frame_size_bytes, bytes.len());
    error
}

#[test]
fn bad_requests_are_refused_one_by_one() {
    let reason = |error: FrameError| match error {
        FrameError::Request { reason, .. } => reason,
        other => panic!("{other}"),
    };
    assert_eq!(
        reason(request_error(15, 1, &[0; 128])),
        RequestError::UnknownOperation { operation: 15 }
    );
    for operation in [12, 13, 14] {
        assert_eq!(
            reason(request_error(operation, 1, &[0; 128])),
            RequestError::OperationNotAllowed { operation }
        );
    }
    assert_eq!(
        reason(request_error(0, 1, &[0; 128])),
        RequestError::OperationNotAllowed { operation: 0 }
    );
    assert_eq!(reason(request_error(2, 0, &[])), RequestError::NoCommands);
    assert_eq!(
        reason(request_error(2, REQUEST_COMMANDS_MAX as u32 + 1, &[])),
        RequestError::TooManyCommands {
            count: 8191,
            max: 8190
        }
    );
    let mismatch = request_error(2, 2, &[0; 128]);
    assert_eq!(mismatch.code(), ErrorCode::RequestBodySizeMismatch);
}

#[test]
fn messages_are_bounded_and_utf8() {
    let long = "é".repeat(MESSAGE_SIZE_BYTES_MAX);
    let bytes = encoded(Frame::Error(Message {
        request_id: 0,
        code: ErrorCode::ShuttingDown,
        message: &long,
    }));
    let Some((Frame::Error(message), _)) = decode(&bytes).unwrap() else {
        panic!("not an error frame");
    };
    assert!(message.message.len() <= MESSAGE_SIZE_BYTES_MAX);
    let mut bytes = encoded(Frame::Error(Message {
        request_id: 0,
        code: ErrorCode::ShuttingDown,
        message: "ab",
    }));
    bytes[HEADER_SIZE_BYTES] = 0xFF;
    reseal(&mut bytes);
    assert_eq!(
        decode(&bytes).unwrap_err().code(),
        ErrorCode::MessageNotUtf8
    );
}

#[test]
fn hello_tokens_are_bounded() {
    let token = vec![b'x'; 257];
    let bytes = encoded(Frame::Hello(Hello {
        client_id: 1,
        token: &token,
    }));
    assert_eq!(
        decode(&bytes).unwrap_err().code(),
        ErrorCode::BodySizeInvalid
    );
}

#[test]
fn protocol_doc_lists_every_error_code() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/PROTOCOL.md"
    ))
    .expect("docs/PROTOCOL.md");
    for &code in ErrorCode::ALL {
        let row = format!("| {} | `{}` |", code as u16, code.name());
        assert!(doc.contains(&row), "docs/PROTOCOL.md lacks the row {row:?}");
    }
}
