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
    /// `Lookup` frames received (admitted or not).
    pub lookups: AtomicU64,
    /// Ids in admitted lookups.
    pub lookup_ids: AtomicU64,
    /// Found lookup replies (`ok`, whatever the number of records found).
    pub replies_found: AtomicU64,
    /// Requests and lookups answered `engine_failed`.
    pub engine_failures: AtomicU64,
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

/// Name, help, kind and field of every sample, in the order they are rendered.
type SampleSource = (
    &'static str,
    &'static str,
    MetricKind,
    fn(&TcpMetrics) -> &AtomicU64,
);

const SAMPLES: &[SampleSource] = &[
    (
        "surge_tcp_connections_accepted_total",
        "TCP connections accepted.",
        MetricKind::Counter,
        |metrics| &metrics.connections_accepted,
    ),
    (
        "surge_tcp_connections_open",
        "TCP connections open now.",
        MetricKind::Gauge,
        |metrics| &metrics.connections_open,
    ),
    (
        "surge_tcp_connections_refused_total",
        "TCP connections refused at the connection limit.",
        MetricKind::Counter,
        |metrics| &metrics.connections_refused,
    ),
    (
        "surge_tcp_handshake_failures_total",
        "TCP handshakes that failed.",
        MetricKind::Counter,
        |metrics| &metrics.handshake_failures,
    ),
    (
        "surge_tcp_requests_total",
        "Request frames received.",
        MetricKind::Counter,
        |metrics| &metrics.requests,
    ),
    (
        "surge_tcp_commands_total",
        "Commands handed to the engine.",
        MetricKind::Counter,
        |metrics| &metrics.commands,
    ),
    (
        "surge_tcp_replies_ok_total",
        "Ok replies.",
        MetricKind::Counter,
        |metrics| &metrics.replies_ok,
    ),
    (
        "surge_tcp_replies_busy_total",
        "Busy replies.",
        MetricKind::Counter,
        |metrics| &metrics.replies_busy,
    ),
    (
        "surge_tcp_replies_rejected_total",
        "Rejected replies.",
        MetricKind::Counter,
        |metrics| &metrics.replies_rejected,
    ),
    (
        "surge_tcp_frame_errors_total",
        "Fatal frame errors (connection closed).",
        MetricKind::Counter,
        |metrics| &metrics.frame_errors,
    ),
    (
        "surge_tcp_idle_timeouts_total",
        "Connections closed for idleness.",
        MetricKind::Counter,
        |metrics| &metrics.idle_timeouts,
    ),
    (
        "surge_tcp_requests_in_flight",
        "Requests and lookups admitted and not yet answered.",
        MetricKind::Gauge,
        |metrics| &metrics.requests_in_flight,
    ),
    (
        "surge_tcp_lookups_total",
        "Lookup frames received.",
        MetricKind::Counter,
        |metrics| &metrics.lookups,
    ),
    (
        "surge_tcp_lookup_ids_total",
        "Ids in admitted lookups.",
        MetricKind::Counter,
        |metrics| &metrics.lookup_ids,
    ),
    (
        "surge_tcp_replies_found_total",
        "Found (ok) lookup replies.",
        MetricKind::Counter,
        |metrics| &metrics.replies_found,
    ),
    (
        "surge_tcp_engine_failures_total",
        "Requests and lookups answered engine_failed.",
        MetricKind::Counter,
        |metrics| &metrics.engine_failures,
    ),
];

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
        SAMPLES
            .iter()
            .map(|&(name, help, kind, field)| MetricSample {
                name,
                help,
                kind,
                value: field(self).load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The value of one sample by name (tests, logs).
    pub fn value(&self, name: &str) -> Option<u64> {
        self.samples()
            .into_iter()
            .find(|sample| sample.name == name)
            .map(|sample| sample.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_its_own_name_and_field() {
        let metrics = TcpMetrics::default();
        TcpMetrics::add(&metrics.requests, 3);
        let samples = metrics.samples();
        let mut names: Vec<_> = samples.iter().map(|sample| sample.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), samples.len());
        assert_eq!(metrics.value("surge_tcp_requests_total"), Some(3));
        let total: u64 = samples.iter().map(|sample| sample.value).sum();
        assert_eq!(total, 3, "one field per sample");
    }
}
