//! Health, readiness and Prometheus metrics. Labels are the matched route template
//! (`/api/v1/collections/{name}/records/{id}`), method and status — never an id or a value.

use crate::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: String,
}

/// `file` or `syslog`: a bounded set, never a path or an address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteOnly, Histogram>,
    audit: AuditGauges,
}

/// The audit pipeline's own health (002-S-11-d), refreshed on every scrape.
#[derive(Default)]
struct AuditGauges {
    checkpoint_file_ok: Gauge,
    checkpoint_file_failures: Gauge,
    checkpoint_failures: Gauge,
    append_failures: Gauge,
    last_checkpoint_seq: Gauge,
    last_checkpoint_timestamp: Gauge,
    siem_ok: Family<SinkLabel, Gauge>,
    siem_forwarded_seq: Family<SinkLabel, Gauge>,
    siem_lag: Family<SinkLabel, Gauge>,
    siem_consecutive_failures: Family<SinkLabel, Gauge>,
    siem_failures: Family<SinkLabel, Gauge>,
    /// Mirrors of the writer's own counters, set (not added to) on each scrape.
    commits: Counter,
    events: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mamori");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0002, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        let audit = AuditGauges::default();
        registry.register(
            "audit_checkpoint_file_ok",
            "1 while the external audit checkpoint file is writable (or not configured), 0 after a failed write",
            audit.checkpoint_file_ok.clone(),
        );
        registry.register(
            "audit_checkpoint_file_failures",
            "Failed writes to the external audit checkpoint file since start",
            audit.checkpoint_file_failures.clone(),
        );
        registry.register(
            "audit_checkpoint_failures",
            "Audit checkpoints that could not be taken since start (chain did not verify, store error)",
            audit.checkpoint_failures.clone(),
        );
        registry.register(
            "audit_append_failures",
            "Batches of audit events that could not be written since start (their requests failed closed)",
            audit.append_failures.clone(),
        );
        registry.register(
            "audit_last_checkpoint_seq",
            "Sequence number of the last signed audit checkpoint this process took",
            audit.last_checkpoint_seq.clone(),
        );
        registry.register(
            "audit_last_checkpoint_timestamp_seconds",
            "Unix time of the last signed audit checkpoint this process took",
            audit.last_checkpoint_timestamp.clone(),
        );
        registry.register(
            "audit_siem_ok",
            "1 while the SIEM sink accepts events, 0 from a failed attempt until the next success",
            audit.siem_ok.clone(),
        );
        registry.register(
            "audit_siem_forwarded_seq",
            "Last audit sequence number the SIEM sink acknowledged",
            audit.siem_forwarded_seq.clone(),
        );
        registry.register(
            "audit_siem_lag_events",
            "Audit events not yet acknowledged by the SIEM sink",
            audit.siem_lag.clone(),
        );
        registry.register(
            "audit_siem_consecutive_failures",
            "Failed attempts of the SIEM sink since its last success",
            audit.siem_consecutive_failures.clone(),
        );
        registry.register(
            "audit_siem_failures",
            "Failed attempts of the SIEM sink since start",
            audit.siem_failures.clone(),
        );
        registry.register(
            "audit_commits",
            "Transactions (durable commits) of audit events since start; events / commits is the group-commit batch size",
            audit.commits.clone(),
        );
        registry.register("audit_events", "Audit events committed since start", audit.events.clone());
        Self { registry, requests, latency, audit }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    // Bounded label set: an unauthenticated client must not be able to mint new series.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "OTHER".to_owned(),
    };
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    // Debug level: the audit trail is the access record; this line is for troubleshooting.
    // The route template only: paths carry record ids, queries may carry a stated purpose.
    tracing::debug!(target: "mamori::http", %method, %route, status, micros = elapsed.as_micros() as u64, "request");
    state.metrics.requests.get_or_create(&RouteLabels { method: method.clone(), route: route.clone(), status }).inc();
    state.metrics.latency.get_or_create(&RouteOnly { route }).observe(elapsed.as_secs_f64());
    res
}

async fn healthz() -> &'static str {
    if mamori_vault::UNAUDITED_BENCHMARK {
        "ok (UNAUDITED BENCHMARK BUILD: audit events are not written; never use it with real data)"
    } else {
        "ok"
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.vault.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

/// The logging pipeline (002-S-11-d): 200 when the checkpoint file and every SIEM sink
/// work, 503 otherwise. Not part of `/readyz`: a SIEM that is down must not take the service
/// out of a load balancer, since requests are still audited in the database.
async fn audit_health(State(state): State<AppState>) -> impl IntoResponse {
    let mut health = state.vault.audit_health();
    // Anyone who reaches the port may ask, so error texts (paths, database messages) stay
    // with the operators: the server log and `mamori status`.
    let withheld = |e: Option<String>| e.map(|_| "withheld: see the server log or `mamori status`".to_owned());
    health.last_error = withheld(health.last_error.take());
    for sink in &mut health.siem {
        sink.last_error = withheld(sink.last_error.take());
    }
    let status = if health.healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({ "healthy": health.healthy(), "audit": health })))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let h = state.vault.audit_health();
    let g = &state.metrics.audit;
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    g.checkpoint_file_ok.set(i64::from(h.checkpoint_file_ok));
    g.checkpoint_file_failures.set(count(h.checkpoint_file_failures));
    g.checkpoint_failures.set(count(h.checkpoint_failures));
    g.append_failures.set(count(h.append_failures));
    g.last_checkpoint_seq.set(count(h.last_checkpoint_seq.unwrap_or(0)));
    g.commits.inner().store(h.commits, std::sync::atomic::Ordering::Relaxed);
    g.events.inner().store(h.events, std::sync::atomic::Ordering::Relaxed);
    g.last_checkpoint_timestamp.set(h.last_checkpoint_at.map(|t| t.unix_timestamp()).unwrap_or(0));
    for sink in &h.siem {
        let label = SinkLabel { sink: sink.sink.clone() };
        g.siem_ok.get_or_create(&label).set(i64::from(sink.ok()));
        g.siem_forwarded_seq.get_or_create(&label).set(count(sink.forwarded_seq));
        g.siem_lag.get_or_create(&label).set(count(sink.lag));
        g.siem_consecutive_failures.get_or_create(&label).set(count(sink.consecutive_failures));
        g.siem_failures.get_or_create(&label).set(count(sink.failures));
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &state.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response()
}

pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::get;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/audit", get(audit_health))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
