//! How a client connects and how patient it is.

use std::time::Duration;

use crate::constants::REQUESTS_IN_FLIGHT_MAX_DEFAULT;
use crate::constants::{CALL_TIMEOUT_DEFAULT, CONNECT_TIMEOUT_DEFAULT, LIVENESS_TIMEOUT_DEFAULT};

/// Configuration of a [`Client`](crate::Client). Its `Debug` output hides the token.
#[derive(Clone)]
pub struct ClientConfig {
    /// This client's id, sent in `Hello` (for the server's logs; make one with
    /// [`id`](crate::id)).
    pub client_id: u128,
    /// The token, as issued by `surge token` (at most 256 bytes).
    pub token: Vec<u8>,
    /// Deadline of the typed calls (`create_transfers`, ...), retries included.
    pub call_timeout: Duration,
    /// Time to connect and handshake, per attempt.
    pub connect_timeout: Duration,
    /// With requests in flight and no frame from the server for this long, the connection
    /// is replaced and its requests resent (same ids).
    pub liveness_timeout: Duration,
    /// Most requests in flight on the connection (the server's limit may lower it).
    pub requests_in_flight_max: usize,
}

impl ClientConfig {
    /// Defaults, with this token and a fresh client id.
    pub fn new(token: impl Into<Vec<u8>>) -> ClientConfig {
        ClientConfig {
            client_id: crate::id(),
            token: token.into(),
            call_timeout: CALL_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            liveness_timeout: LIVENESS_TIMEOUT_DEFAULT,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("liveness_timeout", &self.liveness_timeout)
            .field("requests_in_flight_max", &self.requests_in_flight_max)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_token() {
        let shown = format!("{:?}", ClientConfig::new("s3cret-token"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<12 bytes>"), "{shown}");
    }
}
