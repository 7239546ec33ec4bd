//! Time-ordered 128-bit ids: what every command needs as its idempotency key.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the millisecond timestamp at the top of an id.
const TIMESTAMP_BITS: u32 = 48;

/// Bits of randomness below it.
const RANDOM_BITS: u32 = 128 - TIMESTAMP_BITS;

/// The last id handed out, so ids only grow within a process.
static LAST: Mutex<u128> = Mutex::new(0);

fn random_u64(salt: u64) -> u64 {
    // `RandomState` is seeded from the OS once per thread and stepped per instance:
    // SipHash under those keys is random enough for the low bits of an id, with no
    // dependency.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}

/// A new id: the Unix time in milliseconds in the high 48 bits, 80 random bits below,
/// strictly greater than every id this process made before (within one millisecond, or
/// if the clock steps back, the previous id plus one). Never zero.
///
/// Time-ordered ids keep the engine's id tables and the history index append-mostly, and
/// the random bits keep two processes from colliding. Make the id once, when the command
/// is first built, store it with the intent (the order row, the payment attempt), and
/// reuse it on every retry: that is what makes a retry safe.
pub fn id() -> u128 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let timestamp = millis & ((1u128 << TIMESTAMP_BITS) - 1);
    let low = u128::from(random_u64(1)) << 64 | u128::from(random_u64(2));
    let random = low & ((1u128 << RANDOM_BITS) - 1);
    let fresh = (timestamp << RANDOM_BITS) | random;
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let next = if fresh > *last { fresh } else { *last + 1 };
    *last = next;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_and_carry_the_time() {
        let mut previous = 0;
        for _ in 0..10_000 {
            let next = id();
            assert!(next > previous);
            previous = next;
        }
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let stamped = previous >> RANDOM_BITS;
        assert!(
            stamped <= millis && millis - stamped < 60_000,
            "{stamped} vs {millis}"
        );
    }
}
