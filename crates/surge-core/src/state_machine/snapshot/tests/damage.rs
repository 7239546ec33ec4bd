//! Every kind of damage refused with an error naming it: truncations, flipped and random
//! bytes never panic.

use super::*;

#[test]
fn errors_name_what_is_wrong() {
    let (sm, _) = rich_state();
    let bytes = sm.snapshot();
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(matches!(
        StateMachine::restore(&bad),
        Err(SnapshotError::BadMagic { .. })
    ));
    let mut bad = bytes.clone();
    bad[8] = 1;
    assert!(matches!(
        StateMachine::restore(&bad),
        Err(SnapshotError::UnsupportedVersion { found: 1, .. })
    ));
    let mut bad = bytes.clone();
    bad.push(0);
    assert_eq!(
        StateMachine::restore(&bad).err(),
        Some(SnapshotError::TrailingBytes {
            offset: bytes.len(),
            count: 1
        })
    );
    // The first account's id, zeroed.
    let first_item = HEADER_SIZE_BYTES + COUNT_SIZE_BYTES;
    let mut bad = bytes.clone();
    bad[first_item..first_item + 16].fill(0);
    assert_eq!(
        StateMachine::restore(&bad).err(),
        Some(SnapshotError::InvalidValue {
            offset: first_item,
            what: "account id"
        })
    );
    // A count far past the end.
    let mut bad = bytes.clone();
    bad[HEADER_SIZE_BYTES..first_item].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(StateMachine::restore(&bad).is_err());
    assert!(matches!(
        StateMachine::restore(&bytes[..5]),
        Err(SnapshotError::Truncated { offset: 0, .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let (sm, _) = rich_state();
    let bytes = sm.snapshot();
    for cut in 0..bytes.len() {
        assert!(
            StateMachine::restore(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

/// Restores `bytes`; whatever is accepted must be a machine that works and
/// snapshots back to the same bytes (the encoding is canonical).
fn restore_checked(bytes: &[u8]) {
    if let Result::Ok(sm) = StateMachine::restore(bytes) {
        let _ = sm.state_hash();
        assert!(sm.snapshot() == bytes, "an accepted snapshot is canonical");
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let (sm, _) = rich_state();
    let bytes = sm.snapshot();
    // The capacities are allocation hints: a flipped one is a valid config asking for
    // gigabytes, which the checksummed file around a snapshot is there to catch.
    let capacities = 12..36;
    let mut state = 7;
    let mut rejected = 0;
    for _ in 0..3_000 {
        let mut bad = bytes.clone();
        let flips = 1 + next_random(&mut state) % 3;
        for _ in 0..flips {
            let mut at = (next_random(&mut state) % bytes.len() as u64) as usize;
            while capacities.contains(&at) {
                at = (next_random(&mut state) % bytes.len() as u64) as usize;
            }
            let bit = 1u8 << (next_random(&mut state) % 8);
            bad[at] ^= bit;
        }
        if StateMachine::restore(&bad).is_err() {
            rejected += 1;
        }
        restore_checked(&bad);
    }
    // Most flips land in fields every value of which is valid (balances, user data),
    // but the validation catches a fair share.
    assert!(rejected > 100, "{rejected}");
}

#[test]
fn random_bytes_never_panic() {
    let (sm, _) = rich_state();
    let valid = sm.snapshot();
    let mut state = 11;
    for round in 0..2_000 {
        let len = (next_random(&mut state) % 600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next_random(&mut state) as u8).collect();
        // Half keep a valid header (with small capacities), so the sections are reached.
        if round % 2 == 0 {
            let header = valid.len().min(HEADER_SIZE_BYTES);
            bytes.splice(0..0, valid[..header].iter().copied());
        }
        restore_checked(&bytes);
    }
}

// --- Random command streams. ---
