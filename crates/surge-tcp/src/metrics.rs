//! Counters of the TCP server, as atomics any thread may bump and the HTTP `/metrics`
//! endpoint renders (see [`TcpMetrics::samples`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges of one TCP server. Relaxed atomics: each value is exact, the set
/// is not a consistent snapshot.
#[derive(Debug, Default)]
pub struct TcpMetrics {
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections open now (gauge).
    pub connections_open: AtomicU64,
    /// Connections refused at `connections_max`.
    pub connections_refused: AtomicU64,
    /// Handshakes that failed (bad token, timeout, bad first frame).
    pub handshake_failures: AtomicU64,
    /// `Request` frames received (admitted or not).
    pub requests: AtomicU64,
    /// Commands in requests handed to the engine.
    pub commands: AtomicU64,
    /// `ok` replies.
    pub replies_ok: AtomicU64,
    /// `busy` replies.
    pub replies_busy: AtomicU64,
    /// `rejected` replies.
    pub replies_rejected: AtomicU64,
    /// Fatal frame errors (the connection was closed).
    pub frame_errors: AtomicU64,
    /// Connections closed for idleness.
    pub idle_timeouts: AtomicU64,
    /// Requests in the engine now (gauge).
    pub requests_in_flight: AtomicU64,
}

/// Whether a sample only grows or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One value, with what a Prometheus rendering needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricSample {
    /// Metric name, `surge_tcp_...`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The value now.
    pub value: u64,
}

impl TcpMetrics {
    /// Adds `amount` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Subtracts 1 from a gauge.
    pub(crate) fn decrement(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every value now, named for Prometheus.
    pub fn samples(&self) -> Vec<MetricSample> {
        use MetricKind::{Counter, Gauge};
        let sample = |name, help, kind, value: &AtomicU64| MetricSample {
            name,
            help,
            kind,
            value: value.load(Ordering::Relaxed),
        };
        vec![
            sample(
                "surge_tcp_connections_accepted_total",
                "TCP connections accepted.",
                Counter,
                &self.connections_accepted,
            ),
            sample(
                "surge_tcp_connections_open",
                "TCP connections open now.",
                Gauge,
                &self.connections_open,
            ),
            sample(
                "surge_tcp_connections_refused_total",
                "TCP connections refused at the connection limit.",
                Counter,
                &self.connections_refused,
            ),
            sample(
                "surge_tcp_handshake_failures_total",
                "TCP handshakes that failed.",
                Counter,
                &self.handshake_failures,
            ),
            sample(
                "surge_tcp_requests_total",
                "Request frames received.",
                Counter,
                &self.requests,
            ),
            sample(
                "surge_tcp_commands_total",
                "Commands handed to the engine.",
                Counter,
                &self.commands,
            ),
            sample(
                "surge_tcp_replies_ok_total",
                "Ok replies.",
                Counter,
                &self.replies_ok,
            ),
            sample(
                "surge_tcp_replies_busy_total",
                "Busy replies.",
                Counter,
                &self.replies_busy,
            ),
            sample(
                "surge_tcp_replies_rejected_total",
                "Rejected replies.",
                Counter,
                &self.replies_rejected,
            ),
            sample(
                "surge_tcp_frame_errors_total",
                "Fatal frame errors (connection closed).",
                Counter,
                &self.frame_errors,
            ),
            sample(
                "surge_tcp_idle_timeouts_total",
                "Connections closed for idleness.",
                Counter,
                &self.idle_timeouts,
            ),
            sample(
                "surge_tcp_requests_in_flight",
                "Requests in the engine now.",
                Gauge,
                &self.requests_in_flight,
            ),
        ]
    }

    /// The value of one sample by name (tests, logs).
    pub fn value(&self, name: &str) -> Option<u64> {
        self.samples()
            .into_iter()
            .find(|sample| sample.name == name)
            .map(|sample| sample.value)
    }
}
