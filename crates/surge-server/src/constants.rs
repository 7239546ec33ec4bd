//! Limits and defaults of the server, with their units. Every one of them is either a
//! fixed bound (here) or the default of a setting in [`crate::config`].

use surge_core::constants::BATCH_EVENTS_MAX;

/// Default data directory (created if missing).
pub const DATA_DIR_DEFAULT: &str = "./surge-data";

/// Default HTTP address: loopback only.
pub const HTTP_ADDR_DEFAULT: &str = "127.0.0.1:7780";

/// Default TCP (binary protocol) address: loopback only.
pub const TCP_ADDR_DEFAULT: &str = "127.0.0.1:7781";

/// Default largest HTTP request body, in bytes. A full batch of 8,190 transfers in JSON
/// takes about 3 MiB.
pub const HTTP_BODY_SIZE_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;

/// Default most `/v1/` requests being served at once; past it, 429 at once.
pub const HTTP_REQUESTS_IN_FLIGHT_MAX_DEFAULT: usize = 4_096;

/// Default most open HTTP connections; past it, a new connection gets one `429 busy`
/// answer and is closed.
pub const HTTP_CONNECTIONS_MAX_DEFAULT: usize = 4_096;

/// Connections past `http_connections_max` being answered `429 busy` at once, at most;
/// past it, a new connection is closed without an answer (a flood cannot make the refusals
/// themselves unbounded).
pub const HTTP_REFUSALS_IN_FLIGHT_MAX: usize = 64;

/// Time a refused connection (and a connection accepted while draining) has to send its
/// request's headers, in milliseconds.
pub const HTTP_ONE_ANSWER_HEADER_READ_TIMEOUT_MS: u64 = 1_000;

/// Default time an HTTP connection may sit idle (or take to send a request's headers)
/// before it is closed, in milliseconds.
pub const HTTP_IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;

/// Default time given to in-flight requests after a shutdown signal, in milliseconds.
pub const SHUTDOWN_GRACE_MS_DEFAULT: u64 = 10_000;

/// Default time the server keeps serving, not ready, after a shutdown signal before it
/// drains, in milliseconds (none: drain at once).
pub const SHUTDOWN_DELAY_MS_DEFAULT: u64 = 0;

/// Default most remembered `Idempotency-Key`s.
pub const IDEMPOTENCY_KEYS_MAX_DEFAULT: usize = 100_000;

/// Default age after which a remembered `Idempotency-Key` is forgotten, in seconds.
pub const IDEMPOTENCY_KEY_AGE_S_DEFAULT: u64 = 24 * 60 * 60;

/// Default most bytes of remembered responses, summed over all keys.
pub const IDEMPOTENCY_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Longest `Idempotency-Key` header value, in bytes.
pub const IDEMPOTENCY_KEY_SIZE_BYTES_MAX: usize = 255;

/// Most items in one JSON create request (an array body): one engine batch.
pub const HTTP_BATCH_ITEMS_MAX: usize = BATCH_EVENTS_MAX;

/// Default and largest `limit` of a dispatch feed page, in requests.
pub const DISPATCH_PAGE_REQUESTS_DEFAULT: usize = 100;
/// See [`DISPATCH_PAGE_REQUESTS_DEFAULT`].
pub const DISPATCH_PAGE_REQUESTS_MAX: usize = 1_000;

/// Longest long-poll wait of the dispatch feed, in milliseconds.
pub const DISPATCH_WAIT_MS_MAX: u64 = 30_000;

/// How often a waiting dispatch long-poll looks at the feed again, in milliseconds. It is
/// also woken at once when a payment made through this server's HTTP API completes.
pub const DISPATCH_POLL_INTERVAL_MS: u64 = 50;

/// Default and largest `limit` of a statement page, in lines.
pub const STATEMENT_PAGE_LINES_DEFAULT: usize = 100;
/// See [`STATEMENT_PAGE_LINES_DEFAULT`].
pub const STATEMENT_PAGE_LINES_MAX: usize = 1_000;

/// `Retry-After` sent with a 429, in seconds (the smallest value the header can say).
pub const RETRY_AFTER_S: u64 = 1;

/// How often the token store looks at `tokens.toml` for changes, at most, in
/// milliseconds: a revocation takes effect within this long.
pub const TOKEN_RELOAD_CHECK_INTERVAL_MS: u64 = 100;

/// Random bytes in a token: 256 bits.
pub const TOKEN_SECRET_SIZE_BYTES: usize = 32;

/// Most tokens in `tokens.toml`.
pub const TOKENS_MAX: usize = 10_000;

/// Largest `tokens.toml`, in bytes (10,000 tokens of about 200 bytes).
pub const TOKENS_FILE_SIZE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Largest config file, in bytes.
pub const CONFIG_FILE_SIZE_BYTES_MAX: u64 = 1024 * 1024;

const _: () = assert!(DISPATCH_PAGE_REQUESTS_DEFAULT <= DISPATCH_PAGE_REQUESTS_MAX);
const _: () = assert!(STATEMENT_PAGE_LINES_DEFAULT <= STATEMENT_PAGE_LINES_MAX);
const _: () = assert!(DISPATCH_POLL_INTERVAL_MS <= DISPATCH_WAIT_MS_MAX);
const _: () = assert!(TOKEN_SECRET_SIZE_BYTES * 8 >= 256);

/// Coalesced batches of one operation submitted to the engine and not yet answered, at
/// most: while they are on disk, single-command requests that arrive wait to form the
/// next, larger batch (see [`crate::coalesce`]).
pub const COALESCED_BATCHES_IN_FLIGHT_MAX: usize = 2;
