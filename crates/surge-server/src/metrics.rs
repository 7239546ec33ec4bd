//! `/metrics` in the Prometheus text format (version 0.0.4): requests by route, method and
//! status, latency histograms by route, rejections by reason, and the engine's per-shard
//! figures. Route labels are path templates (`/v1/transfers/{id}`), never raw paths, so
//! the number of series stays bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Why a request was refused before it reached the engine (or by the engine's queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 429 from the in-flight limit.
    InFlightLimit,
    /// 429 because an engine queue was full.
    EngineBusy,
    /// 413.
    BodyTooLarge,
    /// Any other 4xx decided at the edge (bad JSON, wrong types, bad idempotency key).
    BadRequest,
    /// 429 to a connection past `http_connections_max`.
    ConnectionLimit,
    /// 503 to a `/v1/` request that arrived while the server drains.
    ShuttingDown,
}

impl Rejection {
    const ALL: [Rejection; 8] = [
        Rejection::Unauthorized,
        Rejection::Forbidden,
        Rejection::InFlightLimit,
        Rejection::EngineBusy,
        Rejection::BodyTooLarge,
        Rejection::BadRequest,
        Rejection::ConnectionLimit,
        Rejection::ShuttingDown,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::Forbidden => "forbidden",
            Rejection::InFlightLimit => "in_flight_limit",
            Rejection::EngineBusy => "engine_busy",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BadRequest => "bad_request",
            Rejection::ConnectionLimit => "connection_limit",
            Rejection::ShuttingDown => "shutting_down",
        }
    }
}

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
    rejections: [AtomicU64; Rejection::ALL.len()],
}

/// One engine shard's figures, as `/metrics` shows them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardFigures {
    /// Batches waiting in the shard's queue.
    pub queue_depth: u64,
    /// Commands logged.
    pub commands: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Average commands per sync.
    pub commands_per_sync: f64,
    /// Other gauges or counters by name (already prefixed `surge_engine_`), if any.
    pub extra: Vec<(String, f64)>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut routes = self.routes.lock();
        let stats = routes
            .entry((route.to_string(), method.to_string()))
            .or_default();
        *stats.by_status.entry(status).or_default() += 1;
        if let Some(index) = LATENCY_BUCKETS_S.iter().position(|le| seconds <= *le) {
            stats.buckets[index] += 1;
        }
        stats.count += 1;
        stats.sum_s += seconds;
    }

    /// Counts one rejection.
    pub fn reject(&self, rejection: Rejection) {
        let index = Rejection::ALL
            .iter()
            .position(|r| *r == rejection)
            .unwrap_or(0);
        self.rejections[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered with `status` on `route` so far (for tests).
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        self.routes
            .lock()
            .iter()
            .filter(|((r, _), _)| r == route)
            .map(|(_, stats)| stats.by_status.get(&status).copied().unwrap_or(0))
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, in_flight: usize, shards: &[ShardFigures]) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_requests(&mut out);
        let _ = writeln!(
            out,
            "# HELP surge_http_rejections_total Requests refused, by reason.\n\
             # TYPE surge_http_rejections_total counter"
        );
        for (rejection, counter) in Rejection::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(
                out,
                "surge_http_rejections_total{{reason=\"{}\"}} {}",
                rejection.label(),
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP surge_http_requests_in_flight /v1/ requests being served.\n\
             # TYPE surge_http_requests_in_flight gauge\n\
             surge_http_requests_in_flight {in_flight}"
        );
        render_shards(&mut out, shards);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let routes = self.routes.lock();
        let _ = writeln!(
            out,
            "# HELP surge_http_requests_total HTTP requests answered.\n\
             # TYPE surge_http_requests_total counter"
        );
        for ((route, method), stats) in routes.iter() {
            for (status, count) in &stats.by_status {
                let _ = writeln!(
                    out,
                    "surge_http_requests_total{{route=\"{route}\",method=\"{method}\",\
                     status=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP surge_http_request_duration_seconds Time from request to response.\n\
             # TYPE surge_http_request_duration_seconds histogram"
        );
        for ((route, method), stats) in routes.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (le, count) in LATENCY_BUCKETS_S.iter().zip(stats.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "surge_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} \
                     {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "surge_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 surge_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 surge_http_request_duration_seconds_count{{{labels}}} {}",
                stats.count, stats.sum_s, stats.count
            );
        }
    }
}

/// Name, type, help, and how to read it from a shard's figures.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardFigures) -> f64,
);

/// Appends the TCP server's counters and gauges (`surge_tcp_...`).
pub(crate) fn render_tcp(out: &mut String, samples: &[surge_tcp::MetricSample]) {
    for sample in samples {
        let kind = match sample.kind {
            surge_tcp::MetricKind::Counter => "counter",
            surge_tcp::MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}",
            name = sample.name,
            help = sample.help,
            value = sample.value
        );
    }
}

fn render_shards(out: &mut String, shards: &[ShardFigures]) {
    let series: [Series; 4] = [
        (
            "surge_engine_queue_depth",
            "gauge",
            "Batches waiting in the shard's queue.",
            |s| s.queue_depth as f64,
        ),
        (
            "surge_engine_commands_total",
            "counter",
            "Commands logged.",
            |s| s.commands as f64,
        ),
        (
            "surge_engine_syncs_total",
            "counter",
            "fdatasync calls of the shard's log.",
            |s| s.syncs as f64,
        ),
        (
            "surge_engine_commands_per_sync",
            "gauge",
            "Average commands made durable by one fdatasync.",
            |s| s.commands_per_sync,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, figures) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", value(figures));
        }
    }
    let mut extra: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for (shard, figures) in shards.iter().enumerate() {
        for (name, value) in &figures.extra {
            extra.entry(name).or_default().push((shard, *value));
        }
    }
    for (name, values) in extra {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (shard, value) in values {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_shards() {
        let metrics = Metrics::default();
        metrics.record("POST", "/v1/transfers", 201, Duration::from_micros(300));
        metrics.record("POST", "/v1/transfers", 201, Duration::from_millis(30));
        metrics.reject(Rejection::InFlightLimit);
        let shard = ShardFigures {
            queue_depth: 2,
            commands: 10,
            syncs: 5,
            commands_per_sync: 2.0,
            extra: vec![],
        };
        let text = metrics.render(1, &[shard]);
        assert!(text.contains(
            "surge_http_requests_total{route=\"/v1/transfers\",method=\"POST\",status=\"201\"} 2"
        ));
        assert!(text.contains(
            "surge_http_request_duration_seconds_bucket{route=\"/v1/transfers\",method=\"POST\",\
             le=\"0.0005\"} 1"
        ));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("surge_http_rejections_total{reason=\"in_flight_limit\"} 1"));
        assert!(text.contains("surge_engine_commands_per_sync{shard=\"0\"} 2"));
        assert_eq!(metrics.requests("/v1/transfers", 201), 2);
    }
}
