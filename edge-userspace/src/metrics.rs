//! Prometheus metrics of the request path, per chain: requests by status class, time to the
//! response head, origin failures and requests in flight; plus the open client connections.
//!
//! The hot path touches atomics only. A chain's label set is built and its metric handles are
//! looked up (under the families' locks) once per chain and routing version; requests then
//! reach them through a lock-free cache ([`ChainCache`]). prometheus-client's own histogram
//! takes a mutex per observation, hence [`Latency`], an atomic one.
//!
//! [`Metrics::encode`] renders everything in the Prometheus text format for the control
//! socket's `/metrics`. Counters that live elsewhere (the XDP program's maps) join through
//! [`Metrics::register_collector`] and are read on each scrape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::chain::Chain;
use crate::downstream::Closed;

/// Upper bounds (seconds) of the latency buckets: sub-millisecond for cached or blocked
/// answers up to the origin header timeout's range.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// What identifies a chain in every series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabels {
    /// The chain id (the XDP route map's value); `none` for requests no chain took.
    pub chain: String,
    /// The zones in stage order, customer first, joined by `>`.
    pub zones: String,
    /// The custom hostname that made the provider zone the owner, if any.
    pub hostname: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// [`Closed::as_str`].
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    chain: String,
    zones: String,
    hostname: String,
    /// `1xx` … `5xx`.
    class: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The edge's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: RwLock<Registry>,
    requests: Family<StatusLabels, Counter>,
    latency: Family<ChainLabels, Latency>,
    upstream_errors: Family<ChainLabels, Counter>,
    in_flight: Family<ChainLabels, Gauge>,
    connections: Gauge,
    /// One counter per [`Closed`] reason, in [`Closed::ALL`]'s order.
    closed: [Counter; Closed::ALL.len()],
    unrouted: Arc<ChainMetrics>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("edge");
        let requests = Family::<StatusLabels, Counter>::default();
        let latency = Family::<ChainLabels, Latency>::default();
        let upstream_errors = Family::<ChainLabels, Counter>::default();
        let in_flight = Family::<ChainLabels, Gauge>::default();
        let connections = Gauge::default();
        let closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "client_connections_closed",
            "Client connections the edge closed (idle, shed, over the per-address cap) or that \
             ended with an error (protocol errors, floods, resets), by reason",
            closed.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by chain and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request head to the response head, by chain",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests whose origin refused, reset, failed or timed out, by chain",
            upstream_errors.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests waiting for their response head, by chain",
            in_flight.clone(),
        );
        registry.register(
            "client_connections",
            "Client connections open",
            connections.clone(),
        );
        let mut metrics = Metrics {
            registry: RwLock::new(registry),
            requests,
            latency,
            upstream_errors,
            in_flight,
            connections,
            closed: Closed::ALL.map(|why| {
                closed.get_or_create_owned(&ReasonLabels {
                    reason: why.as_str(),
                })
            }),
            unrouted: Arc::new(ChainMetrics::placeholder()),
        };
        metrics.unrouted = Arc::new(metrics.chain(ChainLabels {
            chain: "none".into(),
            zones: String::new(),
            hostname: String::new(),
        }));
        Arc::new(metrics)
    }

    /// The handles of one chain's series; creating them locks the families, so this runs once
    /// per chain (see [`ChainCache`]), never per request.
    pub fn chain(&self, labels: ChainLabels) -> ChainMetrics {
        let status = |class| StatusLabels {
            chain: labels.chain.clone(),
            zones: labels.zones.clone(),
            hostname: labels.hostname.clone(),
            class,
        };
        ChainMetrics {
            requests: CLASSES.map(|class| self.requests.get_or_create_owned(&status(class))),
            latency: self.latency.get_or_create_owned(&labels),
            upstream_errors: self.upstream_errors.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
        }
    }

    /// Where requests that no chain took (unknown hosts, bad requests) are counted.
    pub fn unrouted(&self) -> &Arc<ChainMetrics> {
        &self.unrouted
    }

    /// Counts a client connection until the guard drops.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard(self.connections.clone())
    }

    /// Counts a connection the edge closed, or that ended with an error.
    pub fn connection_closed(&self, why: Closed) {
        let index = Closed::ALL
            .iter()
            .position(|r| *r == why)
            .expect("every reason is in Closed::ALL");
        self.closed[index].inc();
    }

    /// Adds series read at scrape time, e.g. the XDP program's counters from its maps.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry
            .write()
            .expect("metrics registry lock poisoned")
            .register_collector(collector);
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(
            &mut text,
            &self
                .registry
                .read()
                .expect("metrics registry lock poisoned"),
        )
        .expect("writing to a String cannot fail");
        text
    }
}

/// The series of one chain.
#[derive(Debug)]
pub struct ChainMetrics {
    requests: [Counter; 5],
    latency: Latency,
    upstream_errors: Counter,
    in_flight: Gauge,
}

impl ChainMetrics {
    /// Handles registered nowhere: only for [`Metrics::new`] to build its own unrouted entry.
    fn placeholder() -> Self {
        ChainMetrics {
            requests: Default::default(),
            latency: Latency::default(),
            upstream_errors: Counter::default(),
            in_flight: Gauge::default(),
        }
    }

    /// Counts a request in flight until [`InFlight::answered`] or drop.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }
}

/// A request of a chain waiting for its response head.
pub struct InFlight(Arc<ChainMetrics>);

impl InFlight {
    /// The origin refused, reset, failed or timed out.
    pub fn upstream_error(&self) {
        self.0.upstream_errors.inc();
    }

    /// The response head is ready: counts its status class and the time it took.
    pub fn answered(self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.0.requests[class].inc();
        self.0.latency.observe(elapsed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// An open client connection, counted until dropped.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A histogram of durations in atomics: one increment per bucket hit plus count and sum.
#[derive(Clone, Debug, Default)]
pub struct Latency(Arc<LatencyCells>);

#[derive(Debug, Default)]
struct LatencyCells {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Latency {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS.partition_point(|bound| *bound < seconds);
        let cells = &self.0;
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        cells.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &self.0;
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&cells.buckets)
            .map(|(bound, hits)| (bound, hits.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so a scrape racing an observation stays consistent.
        let count = buckets.iter().map(|(_, hits)| hits).sum();
        let sum = Duration::from_nanos(cells.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Per-chain handles for one routing version, read without locks: a request loads the cache
/// (an `ArcSwap`), checks it belongs to the routing it resolved against, and finds its chain
/// by id. A miss (first request of a chain, or the first after a reload renumbered chains)
/// builds a new cache with the entry added.
pub struct ChainCache<V> {
    metrics: Arc<Metrics>,
    current: ArcSwap<Entries<V>>,
}

struct Entries<V> {
    /// The routing version these ids belong to (compared by address, never dereferenced).
    version: Option<Arc<V>>,
    by_id: HashMap<u32, Arc<ChainMetrics>, foldhash::fast::RandomState>,
}

impl<V> ChainCache<V> {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            current: ArcSwap::from_pointee(Entries {
                version: None,
                by_id: HashMap::default(),
            }),
        }
    }

    /// The handles of `chain` as resolved in `version`.
    pub fn get(&self, version: &Arc<V>, chain: &Chain) -> Arc<ChainMetrics> {
        let same = |entries: &Entries<V>| {
            entries
                .version
                .as_ref()
                .is_some_and(|v| Arc::ptr_eq(v, version))
        };
        let entries = self.current.load();
        if same(&entries)
            && let Some(found) = entries.by_id.get(&chain.id)
        {
            return found.clone();
        }
        let found = Arc::new(self.metrics.chain(chain_labels(chain)));
        self.current.rcu(|entries| {
            let mut by_id = if same(entries) {
                entries.by_id.clone()
            } else {
                HashMap::default()
            };
            by_id.insert(chain.id, found.clone());
            Entries {
                version: Some(version.clone()),
                by_id,
            }
        });
        found
    }
}

/// The labels every per-chain series carries.
pub(crate) fn chain_labels(chain: &Chain) -> ChainLabels {
    let zones: Vec<&str> = chain.stages.iter().map(|s| &*s.zone_name).collect();
    ChainLabels {
        chain: chain.id.to_string(),
        zones: zones.join(">"),
        hostname: chain
            .custom_hostname
            .as_ref()
            .map(|h| h.hostname().to_owned())
            .unwrap_or_default(),
    }
}

/// `edge_admission_refused_total{chain, zones, hostname, reason}` for every live chain with a
/// budget, read from the meters on each scrape.
pub struct AdmissionCollector(pub Arc<ArcSwap<crate::routing::Routing>>);

impl std::fmt::Debug for AdmissionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionCollector")
    }
}

impl Collector for AdmissionCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let routing = self.0.load();
        let snapshot = routing.snapshot();
        let mut family = encoder.encode_descriptor(
            "admission_refused",
            "New connections (before the TLS handshake) and requests a chain's budget refused, \
             by chain and reason",
            None,
            MetricType::Counter,
        )?;
        for id in 1..=snapshot.max_chain_id() {
            let Some(chain) = snapshot.chain(id) else {
                continue;
            };
            if chain.admission.budget.is_unset() {
                continue;
            }
            let labels = chain_labels(chain);
            for reason in crate::admission::Refusal::ALL {
                let labels = [
                    ("chain", labels.chain.as_str()),
                    ("zones", labels.zones.as_str()),
                    ("hostname", labels.hostname.as_str()),
                    ("reason", reason.as_str()),
                ];
                prometheus_client::metrics::counter::ConstCounter::new(
                    chain.admission.refused(reason),
                )
                .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_in_the_text() {
        let metrics = Metrics::new();
        let chain = Arc::new(metrics.chain(ChainLabels {
            chain: "7".into(),
            zones: "example.com>saasprovider.com".into(),
            hostname: "mystore.example.com".into(),
        }));
        chain
            .start()
            .answered(StatusCode::OK, Duration::from_micros(300));
        chain
            .start()
            .answered(StatusCode::FORBIDDEN, Duration::from_millis(20));
        let text = metrics.encode();
        let labels =
            r#"chain="7",zones="example.com>saasprovider.com",hostname="mystore.example.com""#;
        for line in [
            format!(r#"edge_requests_total{{{labels},class="2xx"}} 1"#),
            format!(r#"edge_requests_total{{{labels},class="4xx"}} 1"#),
            format!(r#"edge_request_duration_seconds_bucket{{{labels},le="0.0005"}} 1"#),
            format!(r#"edge_request_duration_seconds_bucket{{{labels},le="0.025"}} 2"#),
            format!(r#"edge_request_duration_seconds_count{{{labels}}} 2"#),
            format!(r#"edge_requests_in_flight{{{labels}}} 0"#),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
