//! Property tests of the frame decoder: encode → decode is the identity (lookup replies
//! and their entries too), any byte string decodes without a panic, every truncation of a
//! frame waits for more bytes, and every single-bit flip of a frame is an error.

use proptest::prelude::*;
use surge_core::{Account, AccountId, Batch, ResultCode, Transfer, TransferId};
use surge_protocol::ReplyStatus;
use surge_protocol::{encode_batch, encode_lookup, encode_lookup_reply, encode_reply_codes};
use surge_protocol::{Frame, FrameDecoder, LookupEntry, LookupOperation, LookupStatus};

/// A found lookup reply for `ids` of which those with an even id were found.
fn account_lookup_reply(request_id: u64, ids: &[u128]) -> (Vec<u8>, Vec<LookupEntry>) {
    let found: Vec<LookupEntry> = ids
        .iter()
        .filter(|&&id| id % 2 == 0)
        .map(|&id| {
            LookupEntry::Account(Account {
                id: AccountId(id),
                ledger: 1,
                debits_posted: id as u64,
                ..Account::default()
            })
        })
        .collect();
    let mut entries = Vec::new();
    for entry in &found {
        entry.encode(&mut entries);
    }
    let mut out = Vec::new();
    let count = ids.len() as u32;
    encode_lookup_reply(
        &mut out,
        request_id,
        LookupOperation::Accounts,
        count,
        &entries,
    );
    (out, found)
}

fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::collection::vec(any::<(u128, u64)>(), 1..8)
        )
            .prop_map(|(request_id, fields)| {
                let records: Vec<Transfer> = fields
                    .into_iter()
                    .map(|(id, amount)| Transfer {
                        id: TransferId(id),
                        amount,
                        ..Default::default()
                    })
                    .collect();
                let mut out = Vec::new();
                encode_batch(&mut out, request_id, Batch::CreateTransfers(&records));
                out
            }),
        (
            any::<u64>(),
            proptest::collection::vec(0usize..ResultCode::ALL.len(), 0..16)
        )
            .prop_map(|(request_id, codes)| {
                let codes: Vec<ResultCode> = codes
                    .into_iter()
                    .map(|index| ResultCode::ALL[index])
                    .collect();
                let mut out = Vec::new();
                encode_reply_codes(&mut out, request_id, 2, &codes);
                out
            }),
        any::<u64>().prop_map(|request_id| {
            let mut out = Vec::new();
            Frame::Ping { request_id }.encode(&mut out);
            out
        }),
        (any::<u64>(), proptest::collection::vec(any::<u128>(), 1..8)).prop_map(
            |(request_id, ids)| {
                let body: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
                let mut out = Vec::new();
                let count = ids.len() as u32;
                encode_lookup(&mut out, request_id, LookupOperation::Orders, count, &body);
                out
            }
        ),
        (any::<u64>(), proptest::collection::vec(any::<u128>(), 1..8))
            .prop_map(|(request_id, ids)| account_lookup_reply(request_id, &ids).0),
    ]
}

proptest! {
    #[test]
    fn encode_decode_round_trips(
        request_id in any::<u64>(),
        ids in proptest::collection::vec(1u128.., 1..32),
    ) {
        let records: Vec<Transfer> = ids
            .iter()
            .map(|&id| Transfer { id: TransferId(id), amount: 1, ..Default::default() })
            .collect();
        let mut bytes = Vec::new();
        encode_batch(&mut bytes, request_id, Batch::CreateTransfers(&records));
        let (frame, size) = FrameDecoder::default().decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(size, bytes.len());
        let Frame::Request(request) = frame else { panic!("not a request") };
        prop_assert_eq!(request.request_id, request_id);
        let batch = Batch::CreateTransfers(&records);
        prop_assert_eq!(request.body, batch.body());
        // Re-encoding the decoded frame gives the same bytes.
        let mut again = Vec::new();
        frame.encode(&mut again);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn replies_round_trip(
        request_id in any::<u64>(),
        indexes in proptest::collection::vec(0usize..ResultCode::ALL.len(), 0..64),
    ) {
        let codes: Vec<ResultCode> =
            indexes.into_iter().map(|index| ResultCode::ALL[index]).collect();
        let mut bytes = Vec::new();
        encode_reply_codes(&mut bytes, request_id, 7, &codes);
        let decoded = FrameDecoder::default().decode(&bytes).unwrap();
        let Some((Frame::Reply(reply), _)) = decoded else { panic!("not a reply") };
        prop_assert_eq!(reply.request_id, request_id);
        let ReplyStatus::Ok(decoded) = reply.status else { panic!("not ok") };
        prop_assert_eq!(decoded.to_vec(), Ok(codes));
    }

    #[test]
    fn lookup_replies_round_trip(
        request_id in any::<u64>(),
        ids in proptest::collection::vec(any::<u128>(), 0..64),
    ) {
        let (bytes, found) = account_lookup_reply(request_id, &ids);
        let decoded = FrameDecoder::default().decode(&bytes).unwrap();
        let Some((frame @ Frame::LookupReply(reply), _)) = decoded else {
            panic!("not a lookup reply")
        };
        let LookupStatus::Found(entries) = reply.status else { panic!("not found") };
        prop_assert_eq!(entries.ids_count() as usize, ids.len());
        let decoded: Vec<LookupEntry> = entries.iter().map(Result::unwrap).collect();
        prop_assert_eq!(decoded, found);
        let mut again = Vec::new();
        frame.encode(&mut again);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let decoder = FrameDecoder::new(256);
        let _ = decoder.decode(&bytes);
        let _ = decoder.frame_size_needed(&bytes);
        // Behind a valid magic and version, the rest is arbitrary too.
        let mut framed = b"SRGP\x01\x00".to_vec();
        framed.extend_from_slice(&bytes);
        if let Ok(Some((_, size))) = decoder.decode(&framed) {
            prop_assert!(size <= framed.len());
        }
    }

    #[test]
    fn truncations_wait_for_more(bytes in frame_bytes(), cut in any::<prop::sample::Index>()) {
        let end = cut.index(bytes.len());
        prop_assert_eq!(FrameDecoder::default().decode(&bytes[..end]), Ok(None));
    }

    #[test]
    fn single_bit_flips_are_errors(bytes in frame_bytes(), bit in any::<prop::sample::Index>()) {
        let mut flipped = bytes.clone();
        let bit = bit.index(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        // A flip may make the frame look longer (Ok(None): wait) or be refused; it never
        // decodes to a frame.
        match FrameDecoder::default().decode(&flipped) {
            Ok(Some((frame, _))) => prop_assert!(false, "bit {bit} flipped decodes: {frame:?}"),
            Ok(None) => prop_assert!(bit / 8 >= 16 && bit / 8 < 20, "bit {bit}: waits"),
            Err(_) => {}
        }
    }
}
