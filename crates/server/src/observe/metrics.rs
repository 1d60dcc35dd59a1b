//! `GET /metrics`: Prometheus (OpenMetrics text) series of the loop, named by Prometheus
//! conventions (base units in names, `_total` counters) and labelled only with bounded
//! values: a verdict, a policy rule's `@id`, a route template, a method, a status.
//!
//! Counted as requests pass: HTTP requests by route and status, verdicts by verdict and
//! deciding rule, decision latency, webhook delivery failures. Read at each scrape from
//! one snapshot: review queue depth and oldest age, ledger size, checkpoint age, outbox
//! depth; and from the store's serial step: batches, write sets, commit time.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use agentsigna_core::engine::figures::Figures;
use agentsigna_core::engine::Engine;
use agentsigna_core::store::SerialFigures;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of an HTTP request: the matched route template (never the raw path), the
/// method (one of the standard ones, else `OTHER`) and the status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

/// Labels of an HTTP latency: route template and method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// Labels of a verdict: the verdict and the `@id` of the rule that decided it (`default`
/// when no rule matched).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: String,
    pub rule: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    scraped: std::sync::Arc<Scraped>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub verdicts: Family<VerdictLabels, Counter>,
    pub decision_duration: Histogram,
    /// Failed webhook delivery attempts (shared with the notifier).
    pub webhook_failures: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "agentsigna_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "agentsigna_http_request_duration",
            "Time from a request's head to its answer, by route template and method",
            Unit::Seconds,
            http_duration.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "agentsigna_verdicts",
            "Verdicts of new requests (POST /v1/requests answered 201), by verdict and deciding rule",
            verdicts.clone(),
        );
        let decision_duration = latency_histogram();
        registry.register_with_unit(
            "agentsigna_decision_duration",
            "Time to decide a new request and commit it durably (POST /v1/requests answered 201)",
            Unit::Seconds,
            decision_duration.clone(),
        );
        let webhook_failures = Counter::default();
        registry.register(
            "agentsigna_webhook_delivery_failures",
            "Webhook delivery attempts that failed (each is retried with backoff, then given up)",
            webhook_failures.clone(),
        );
        let scraped = std::sync::Arc::new(Scraped::default());
        registry.register_collector(Box::new(scraped.clone()));
        Metrics { registry, scraped, http_requests, http_duration, verdicts, decision_duration, webhook_failures }
    }

    /// Reads the figures of the loop and the store, then renders every series.
    pub async fn render(&self, engine: &Engine) -> String {
        let figures = engine.figures().await;
        if let Err(e) = &figures {
            tracing::warn!(error = %e, "metrics: cannot read the figures of the store");
        }
        let now_ms = engine.clock().now_ms();
        let snapshot = Snapshot { figures: figures.ok(), serial: engine.serial_figures(), now_ms };
        *agentsigna_core::sync::lock(&self.scraped.0) = Some(snapshot);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics: cannot encode the registry");
        }
        out
    }
}

/// The figures read for the scrape in progress.
#[derive(Debug, Clone)]
struct Snapshot {
    figures: Option<Figures>,
    serial: SerialFigures,
    now_ms: i64,
}

/// The series read at each scrape.
#[derive(Debug, Default)]
struct Scraped(Mutex<Option<Snapshot>>);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, unit, g.metric_type())?;
    g.encode(m)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: f64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, unit, c.metric_type())?;
    c.encode(m)
}

fn secs(ms: i64) -> f64 {
    (ms.max(0) as f64) / 1000.0
}

impl Collector for Scraped {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let snap = match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let Some(s) = snap else { return Ok(()) };
        gauge(
            &mut e,
            "agentsigna_store_up",
            "1 when the figures below could be read from the store at this scrape, else 0",
            None,
            if s.figures.is_some() { 1.0 } else { 0.0 },
        )?;
        if let Some(f) = &s.figures {
            gauge(
                &mut e,
                "agentsigna_review_queue_depth",
                "Reviews waiting for a decision",
                None,
                f.reviews_pending as f64,
            )?;
            gauge(
                &mut e,
                "agentsigna_review_oldest_age",
                "Age of the oldest pending review (0 when none)",
                Some(&Unit::Seconds),
                f.oldest_review_opened_ms.map_or(0.0, |t| secs(s.now_ms - t)),
            )?;
            gauge(&mut e, "agentsigna_ledger_entries", "Entries in the ledger", None, f.ledger_entries as f64)?;
            if let Some(t) = f.last_entry_ms {
                gauge(
                    &mut e,
                    "agentsigna_checkpoint_age",
                    "Time since the last ledger entry, whose batch signed the latest checkpoint",
                    Some(&Unit::Seconds),
                    secs(s.now_ms - t),
                )?;
            }
            gauge(
                &mut e,
                "agentsigna_webhook_outbox_depth",
                "Webhook notifications queued (undelivered, or given up and kept as evidence)",
                None,
                f.outbox_items as f64,
            )?;
        }
        let serial = &s.serial;
        counter(
            &mut e,
            "agentsigna_store_batches",
            "Batches (transactions) of the store's serial step, committed or attempted, by this process",
            None,
            serial.batches as f64,
        )?;
        counter(
            &mut e,
            "agentsigna_store_write_sets",
            "Write sets handled by the serial step; per batch: the batch size",
            None,
            serial.write_sets as f64,
        )?;
        counter(
            &mut e,
            "agentsigna_store_entries_sequenced",
            "Ledger entries sequenced by the serial step",
            None,
            serial.entries as f64,
        )?;
        counter(
            &mut e,
            "agentsigna_store_busy",
            "Time inside the serial step, commit included (PostgreSQL: the sequencing lock held)",
            Some(&Unit::Seconds),
            serial.busy_micros as f64 / 1e6,
        )?;
        counter(
            &mut e,
            "agentsigna_store_commit",
            "Time in COMMIT (the fsync); per batch: the commit latency (not measured apart on PostgreSQL)",
            Some(&Unit::Seconds),
            serial.commit_micros as f64 / 1e6,
        )?;
        Ok(())
    }
}

/// The method label: a standard method, else `OTHER` (methods are client input).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}
