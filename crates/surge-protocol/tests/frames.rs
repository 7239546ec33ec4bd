//! Frame decoding, case by case: every kind round-trips (lookups and their entries too), and
//! every documented way bytes fail to be a frame gives its error (and code), never a panic.

use surge_core::TransferLookup;
use surge_core::{Account, AccountId, Batch, Operation, Order, OrderId, OrderLookup};
use surge_core::{OrderView, PendingStatus, ResultCode, Sku, SkuId, Transfer, TransferId};
use surge_protocol::constants::{FRAME_BODY_SIZE_BYTES_MAX, HEADER_SIZE_BYTES, MAGIC};
use surge_protocol::constants::{LOOKUP_IDS_MAX, LOOKUP_REPLY_HEAD_SIZE_BYTES};
use surge_protocol::constants::{MESSAGE_SIZE_BYTES_MAX, REQUEST_COMMANDS_MAX};
use surge_protocol::{encode_batch, encode_lookup, encode_lookup_reply, encode_reply_codes};
use surge_protocol::{encode_request, EntryError, ErrorCode, Frame, FrameDecoder, FrameError};
use surge_protocol::{Hello, LookupEntry, LookupError, LookupOperation, LookupReply};
use surge_protocol::{LookupStatus, Message, Reply, ReplyStatus, RequestError, Scopes, Welcome};

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
        reason(request_error(22, 1, &[0; 128])),
        RequestError::UnknownOperation { operation: 22 }
    );
    // The engine's own messages between shards.
    for operation in [12, 13, 14, 15, 16, 17, 18, 20, 21] {
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

fn lookup_bytes(operation: LookupOperation, count: u32, ids: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_lookup(&mut bytes, 21, operation, count, ids);
    bytes
}

fn entries_of(found: &[LookupEntry]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in found {
        entry.encode(&mut bytes);
    }
    bytes
}

fn sample_entries() -> Vec<LookupEntry> {
    let transfer = transfers(1)[0];
    let order = Order {
        id: OrderId(9),
        buyer_id: AccountId(1),
        amount: 500,
        line_count: 1,
        status: 2,
        ..Order::default()
    };
    vec![
        LookupEntry::Account(Account {
            id: AccountId(7),
            ledger: 1,
            credits_posted: 40,
            ..Account::default()
        }),
        LookupEntry::Transfer {
            id: transfer.id,
            lookup: TransferLookup::Committed {
                transfer,
                pending_status: Some(PendingStatus::Posted),
            },
        },
        LookupEntry::Transfer {
            id: TransferId(8),
            lookup: TransferLookup::Failed(ResultCode::ExceedsCredits),
        },
        LookupEntry::Sku(Sku {
            id: SkuId(u64::MAX),
            units_stocked: 10,
            ..Sku::default()
        }),
        LookupEntry::Order {
            id: order.id,
            lookup: OrderLookup::Placed(OrderView {
                order,
                expires_at: 77,
                payment_transfer_id: TransferId(3),
                closing_transfer_id: TransferId(0),
            }),
        },
        LookupEntry::Order {
            id: OrderId(10),
            lookup: OrderLookup::Failed(ResultCode::IdAlreadyFailed),
        },
    ]
}

#[test]
fn lookups_and_their_replies_round_trip() {
    let ids: Vec<u8> = [5u128, 6].iter().flat_map(|id| id.to_le_bytes()).collect();
    let bytes = lookup_bytes(LookupOperation::Transfers, 2, &ids);
    let Some((Frame::Lookup(lookup), size)) = decode(&bytes).unwrap() else {
        panic!("not a lookup");
    };
    assert_eq!(size, HEADER_SIZE_BYTES + 32);
    assert_eq!(lookup.ids().collect::<Vec<_>>(), [5, 6]);
    let sku_ids = 9u64.to_le_bytes();
    let bytes = lookup_bytes(LookupOperation::Skus, 1, &sku_ids);
    let Some((Frame::Lookup(lookup), _)) = decode(&bytes).unwrap() else {
        panic!("not a lookup");
    };
    assert_eq!(lookup.ids().collect::<Vec<_>>(), [9]);

    for entry in sample_entries() {
        let operation = entry.operation();
        let entries = entries_of(&[entry]);
        assert_eq!(entries.len(), operation.entry_size_bytes());
        let mut bytes = Vec::new();
        encode_lookup_reply(&mut bytes, 4, operation, 3, &entries);
        let Some((frame @ Frame::LookupReply(reply), size)) = decode(&bytes).unwrap() else {
            panic!("not a lookup reply");
        };
        assert_eq!(size, bytes.len());
        let LookupStatus::Found(found) = reply.status else {
            panic!("not found");
        };
        assert_eq!((found.ids_count(), found.len()), (3, 1));
        assert_eq!(found.iter().collect::<Vec<_>>(), [Ok(entry)]);
        assert_eq!(encoded(frame), bytes);
    }
    for status in [
        LookupStatus::Busy,
        LookupStatus::Rejected(ErrorCode::TooManyIds),
    ] {
        let frame = Frame::LookupReply(LookupReply {
            request_id: 8,
            operation: 9,
            status,
        });
        let bytes = encoded(frame);
        assert_eq!(decode(&bytes), Ok(Some((frame, bytes.len()))));
    }
    // Nothing found: the head alone.
    let mut bytes = Vec::new();
    encode_lookup_reply(&mut bytes, 4, LookupOperation::Accounts, 2, &[]);
    assert_eq!(
        bytes.len(),
        HEADER_SIZE_BYTES + LOOKUP_REPLY_HEAD_SIZE_BYTES
    );
    let Some((Frame::LookupReply(reply), _)) = decode(&bytes).unwrap() else {
        panic!("not a lookup reply");
    };
    assert!(matches!(reply.status, LookupStatus::Found(found) if found.is_empty()));
}

fn lookup_error(operation: u8, count: u32, ids: &[u8]) -> LookupError {
    let mut bytes = lookup_bytes(LookupOperation::Accounts, count, ids);
    bytes[24] = operation;
    reseal(&mut bytes);
    let error = decode(&bytes).unwrap_err();
    assert!(!error.is_fatal(), "{error}");
    match error {
        FrameError::Lookup {
            request_id,
            frame_size_bytes,
            reason,
            ..
        } => {
            assert_eq!(request_id, 21);
            assert_eq!(frame_size_bytes, bytes.len());
            reason
        }
        other => panic!("not a lookup error: {other}"),
    }
}

#[test]
fn bad_lookups_are_refused_one_by_one() {
    let codes = |reason: LookupError| reason.code();
    for operation in [0, 5, 255] {
        let reason = lookup_error(operation, 1, &[0; 16]);
        assert_eq!(reason, LookupError::UnknownOperation { operation });
        assert_eq!(codes(reason), ErrorCode::UnknownOperation);
    }
    assert_eq!(lookup_error(1, 0, &[]), LookupError::NoIds);
    let too_many = lookup_error(1, LOOKUP_IDS_MAX as u32 + 1, &[]);
    assert_eq!(codes(too_many), ErrorCode::TooManyIds);
    let mismatch = lookup_error(1, 2, &[0; 16]);
    assert_eq!(codes(mismatch), ErrorCode::LookupBodyInvalid);
    // SKU ids are 8 bytes: 16 bytes are two of them, not one.
    assert_eq!(
        codes(lookup_error(3, 1, &[0; 16])),
        ErrorCode::LookupBodyInvalid
    );
    let mut bytes = lookup_bytes(LookupOperation::Accounts, 1, &[0; 16]);
    bytes[25] = 1;
    reseal(&mut bytes);
    assert_eq!(
        decode(&bytes).unwrap_err().code(),
        ErrorCode::RequestReservedNotZero
    );
}

#[test]
fn lookup_replies_must_agree_with_their_head() {
    let entries = entries_of(&sample_entries()[..1]);
    let mut good = Vec::new();
    encode_lookup_reply(&mut good, 4, LookupOperation::Accounts, 1, &entries);
    let head = HEADER_SIZE_BYTES;
    let fatal = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        change(&mut bytes);
        reseal(&mut bytes);
        let error = decode(&bytes).unwrap_err();
        assert!(error.is_fatal(), "{error}");
        error.code()
    };
    // More found than asked for.
    assert_eq!(fatal(&|b| b[28] = 0), ErrorCode::ReservedNotZero);
    // Another entry size.
    assert_eq!(fatal(&|b| b[head + 4] = 144), ErrorCode::ReservedNotZero);
    // Reserved head bytes.
    assert_eq!(fatal(&|b| b[head + 8] = 1), ErrorCode::ReservedNotZero);
    // Not a lookup operation.
    assert_eq!(fatal(&|b| b[24] = 5), ErrorCode::ReservedNotZero);
    // A found count the body does not hold.
    assert_eq!(
        fatal(&|b| {
            b[28] = 2;
            b[head] = 2;
        }),
        ErrorCode::BodySizeInvalid
    );
    // A busy reply with a body.
    assert_eq!(fatal(&|b| b[25] = 1), ErrorCode::ReservedNotZero);
}

#[test]
fn entries_a_newer_server_filled_differently_are_errors() {
    let transfer = sample_entries()[1];
    let mut bytes = entries_of(&[transfer]);
    bytes[132] = 9;
    assert_eq!(
        LookupEntry::decode(LookupOperation::Transfers, &bytes),
        Err(EntryError::UnknownPendingStatus { status: 9 })
    );
    let failed = sample_entries()[2];
    let mut bytes = entries_of(&[failed]);
    bytes[40] = 1;
    assert_eq!(
        LookupEntry::decode(LookupOperation::Transfers, &bytes),
        Err(EntryError::NotZero { field: "transfer" })
    );
    let mut bytes = entries_of(&[failed]);
    bytes[128..132].copy_from_slice(&65_000u32.to_le_bytes());
    assert_eq!(
        LookupEntry::decode(LookupOperation::Transfers, &bytes),
        Err(EntryError::UnknownResultCode { code: 65_000 })
    );
    let order = sample_entries()[5];
    let mut bytes = entries_of(&[order]);
    bytes[319] = 1;
    assert!(LookupEntry::decode(LookupOperation::Orders, &bytes).is_err());
    assert!(LookupEntry::decode(LookupOperation::Orders, &bytes[..100]).is_err());
}
