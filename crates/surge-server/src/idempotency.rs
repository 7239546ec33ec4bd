//! `Idempotency-Key`: the first response to a key is remembered and replayed to a retry
//! with the same key, method, path and body; the same key with anything else is
//! `idempotency_key_reused`. Keys are per token (two clients cannot collide).
//!
//! Bounded three ways: at most `keys_max` keys, at most `bytes_max` bytes of remembered
//! responses, and each key forgotten `age` after its response was stored; the oldest key
//! goes first. Only responses decided by the engine are remembered (a command's result or
//! problem); a request refused before it (401, 413, 429, bad JSON) leaves no trace, so its
//! retry runs afresh. While the first request with a key is being served, a second one
//! gets `idempotency_key_in_flight` (409). The map lives in memory: a restart forgets it,
//! which is safe because every command's own id is an idempotency key in the engine (a
//! retry after a restart gets `exists`, not a second effect).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::constants::IDEMPOTENCY_KEY_SIZE_BYTES_MAX;

/// A response to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

type Key = (String, String);

enum Entry {
    InFlight {
        fingerprint: [u8; 32],
    },
    Done {
        fingerprint: [u8; 32],
        response: StoredResponse,
    },
}

struct Inner {
    entries: HashMap<Key, (Entry, u64)>,
    /// Keys by the time their response was stored, oldest first, with the entry's serial
    /// (a stale line, whose key was removed or stored again, is skipped).
    order: VecDeque<(Key, u64, Instant)>,
    serial_next: u64,
    bytes: usize,
}

/// The remembered keys.
pub struct IdempotencyCache {
    inner: Mutex<Inner>,
    keys_max: usize,
    bytes_max: usize,
    age: Duration,
}

/// What to do with a request that carries a key.
pub enum Begin {
    /// Serve it; hand the response to [`Claim::complete`].
    Proceed(Claim),
    /// Answer with the first response.
    Replay(StoredResponse),
    /// The key was used for another request.
    Reused,
    /// The first request with this key is still being served.
    InFlight,
}

/// The right to serve a key's first request. Dropped without [`Claim::complete`] (the
/// request failed before the engine decided), the key is released for a retry.
pub struct Claim {
    cache: Arc<IdempotencyCache>,
    key: Option<Key>,
}

/// Whether a header value can be a key: 1..=255 bytes of visible ASCII.
pub fn key_is_valid(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= IDEMPOTENCY_KEY_SIZE_BYTES_MAX
        && key.iter().all(|byte| byte.is_ascii_graphic())
}

/// The fingerprint of a request: method, path and query, body.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(path_and_query.as_bytes());
    hash.update([0]);
    hash.update(body);
    hash.finalize().into()
}

impl IdempotencyCache {
    /// An empty cache with these bounds.
    pub fn new(keys_max: usize, bytes_max: usize, age: Duration) -> IdempotencyCache {
        IdempotencyCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                serial_next: 0,
                bytes: 0,
            }),
            keys_max,
            bytes_max,
            age,
        }
    }

    /// Keys remembered (done or in flight).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks `key` up for `token_id`'s request with `fingerprint`.
    pub fn begin(self: &Arc<Self>, token_id: &str, key: &str, fingerprint: [u8; 32]) -> Begin {
        let mut inner = self.inner.lock();
        self.forget_old(&mut inner, Instant::now());
        let map_key = (token_id.to_string(), key.to_string());
        match inner.entries.get(&map_key) {
            Some((Entry::InFlight { fingerprint: first }, _)) => {
                if *first == fingerprint {
                    Begin::InFlight
                } else {
                    Begin::Reused
                }
            }
            Some((
                Entry::Done {
                    fingerprint: first,
                    response,
                },
                _,
            )) => {
                if *first == fingerprint {
                    Begin::Replay(response.clone())
                } else {
                    Begin::Reused
                }
            }
            None => {
                let serial = inner.serial_next;
                inner.serial_next += 1;
                inner
                    .entries
                    .insert(map_key.clone(), (Entry::InFlight { fingerprint }, serial));
                Begin::Proceed(Claim {
                    cache: Arc::clone(self),
                    key: Some(map_key),
                })
            }
        }
    }

    /// Drops keys past their age, then the oldest while over a bound.
    fn forget_old(&self, inner: &mut Inner, now: Instant) {
        while let Some((key, serial, stored_at)) = inner.order.front().cloned() {
            let current =
                matches!(inner.entries.get(&key), Some((Entry::Done { .. }, s)) if *s == serial);
            let over = inner.entries.len() > self.keys_max || inner.bytes > self.bytes_max;
            if current && !over && now.duration_since(stored_at) < self.age {
                break;
            }
            inner.order.pop_front();
            if current {
                if let Some((Entry::Done { response, .. }, _)) = inner.entries.remove(&key) {
                    inner.bytes -= response.body.len();
                }
            }
        }
    }
}

impl Claim {
    /// Remembers the response of the key's first request.
    pub fn complete(mut self, response: StoredResponse) {
        let Some(key) = self.key.take() else {
            return;
        };
        let cache = &self.cache;
        let mut inner = cache.inner.lock();
        let fingerprint = match inner.entries.remove(&key) {
            Some((Entry::InFlight { fingerprint }, _)) => fingerprint,
            // Forgotten meanwhile (a bound was hit): nothing to complete.
            _ => return,
        };
        if response.body.len() > cache.bytes_max {
            return;
        }
        let serial = inner.serial_next;
        inner.serial_next += 1;
        inner.bytes += response.body.len();
        inner.order.push_back((key.clone(), serial, Instant::now()));
        inner.entries.insert(
            key,
            (
                Entry::Done {
                    fingerprint,
                    response,
                },
                serial,
            ),
        );
        cache.forget_old(&mut inner, Instant::now());
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut inner = self.cache.inner.lock();
            if matches!(inner.entries.get(&key), Some((Entry::InFlight { .. }, _))) {
                inner.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &str) -> StoredResponse {
        StoredResponse {
            status: 201,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
        }
    }

    fn cache(keys_max: usize, bytes_max: usize, age: Duration) -> Arc<IdempotencyCache> {
        Arc::new(IdempotencyCache::new(keys_max, bytes_max, age))
    }

    #[test]
    fn replays_the_first_response_and_refuses_another_body() {
        let cache = cache(10, 1_000, Duration::from_secs(60));
        let first = fingerprint("POST", "/v1/transfers", b"{}");
        let Begin::Proceed(claim) = cache.begin("t", "k", first) else {
            panic!("first use proceeds")
        };
        assert!(matches!(cache.begin("t", "k", first), Begin::InFlight));
        claim.complete(response("one"));
        assert!(matches!(cache.begin("t", "k", first), Begin::Replay(r) if r.body == b"one"));
        let other = fingerprint("POST", "/v1/transfers", b"{ }");
        assert!(matches!(cache.begin("t", "k", other), Begin::Reused));
        assert!(
            matches!(cache.begin("u", "k", other), Begin::Proceed(_)),
            "per token"
        );
    }

    #[test]
    fn a_dropped_claim_frees_the_key() {
        let cache = cache(10, 1_000, Duration::from_secs(60));
        let print = fingerprint("POST", "/", b"");
        drop(cache.begin("t", "k", print));
        assert!(cache.is_empty());
        assert!(matches!(cache.begin("t", "k", print), Begin::Proceed(_)));
    }

    #[test]
    fn bounded_by_count_bytes_and_age() {
        let cache = cache(3, 10, Duration::from_secs(60));
        for index in 0..5 {
            let key = format!("k{index}");
            let Begin::Proceed(claim) = cache.begin("t", &key, [index; 32]) else {
                panic!("new key")
            };
            claim.complete(response("abc"));
        }
        assert_eq!(cache.len(), 3);
        assert!(matches!(cache.begin("t", "k0", [0; 32]), Begin::Proceed(_)));
        let cache = IdempotencyCache::new(100, 5, Duration::from_secs(60));
        let cache = Arc::new(cache);
        for index in 0..4u8 {
            if let Begin::Proceed(claim) = cache.begin("t", &index.to_string(), [index; 32]) {
                claim.complete(response("abc"));
            }
        }
        assert!(cache.inner.lock().bytes <= 5);
        let cache = self::cache(100, 1_000, Duration::from_millis(1));
        if let Begin::Proceed(claim) = cache.begin("t", "k", [1; 32]) {
            claim.complete(response("abc"));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            matches!(cache.begin("t", "k", [2; 32]), Begin::Proceed(_)),
            "aged out"
        );
    }

    #[test]
    fn keys_are_visible_ascii() {
        assert!(key_is_valid(b"order-42"));
        assert!(!key_is_valid(b""));
        assert!(!key_is_valid(b"a b"));
        assert!(!key_is_valid(&[b'a'; 256]));
    }
}
