//! Which shard owns an id. Accounts, SKUs and orders are partitioned by a hash of their
//! id; the number of shards is fixed for a data directory, so the answer never changes.
//! The hash is independent of the one the state machine's tables index by (a shard's ids
//! would otherwise crowd into part of each table).

/// Most shards an engine runs.
pub const SHARDS_MAX: u32 = 256;

/// Seed mixed into the shard hash, so it differs from the tables' own hash.
const SHARD_HASH_SEED: u64 = 0x5EED_5EED_D1CE_F00D;

/// The shard (`0..shard_count`) that owns the 128-bit id `id`.
pub fn shard_of(id: u128, shard_count: u32) -> u32 {
    assert!(shard_count >= 1);
    assert!(shard_count <= SHARDS_MAX);
    let folded = (id as u64) ^ ((id >> 64) as u64).rotate_left(29) ^ SHARD_HASH_SEED;
    let hash = finalize(folded);
    // Multiply-shift: uses the hash's high bits, no division.
    ((u128::from(hash) * u128::from(shard_count)) >> 64) as u32
}

/// A 64-bit finalizer (xor-shift-multiply).
fn finalize(value: u64) -> u64 {
    let value = (value ^ (value >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    let value = (value ^ (value >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    value ^ (value >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_owns_everything() {
        for id in [0, 1, u128::MAX, 1 << 64] {
            assert_eq!(shard_of(id, 1), 0);
        }
    }

    #[test]
    fn sequential_ids_spread_evenly() {
        for shard_count in [2, 3, 4, 8] {
            let mut counts = vec![0u32; shard_count as usize];
            for id in 1..=100_000u128 {
                counts[shard_of(id, shard_count) as usize] += 1;
            }
            let expected = 100_000 / shard_count;
            for count in counts {
                assert!(
                    count.abs_diff(expected) < expected / 20,
                    "{count} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn high_bits_matter() {
        let moved = (1..=1000u128)
            .filter(|high| shard_of(high << 64, 4) != shard_of(0, 4))
            .count();
        assert!(moved > 600);
    }
}
