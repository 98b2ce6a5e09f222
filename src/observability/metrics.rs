//! The service's Prometheus metrics, in one registry per server.
//!
//! Each part of the process owns its own metric handles (cheap clones of
//! shared atomics) and records into them; [`Metrics::new`] registers them all
//! under the `allegro_` prefix so `/metrics` serves one exposition. Gauges
//! that describe the database (executions by phase, ready batches, the pool)
//! are computed when scraped ([`ServiceGauges`]).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label set: pairs of a static label name and its value.
pub type Labels = Vec<(&'static str, String)>;

/// A family of histograms with the service's default buckets.
pub type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Buckets from 1 ms to about 65 s, doubling: durations of claims, batches,
/// plans and RPCs all fall in this range.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Buckets from 10 ms to about 11 h, for the scheduler's start lag (a
/// catch-up after downtime starts runs hours late).
fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 22))
}

fn histogram_family() -> HistogramFamily {
    Family::new_with_constructor(duration_histogram)
}

/// What the engine records: work items, batches, plans, and the scheduler's
/// automatic runs. Held by the engine; cheap to clone.
#[derive(Clone)]
pub struct EngineMetrics {
    by_client: bool,
    planned: Family<Labels, Counter>,
    processed: Family<Labels, Counter>,
    errored: Family<Labels, Counter>,
    batches_claimed: Counter,
    lease_takeovers: Counter,
    batches_settled: Family<Labels, Counter>,
    batch_duration: HistogramFamily,
    claim_latency: Histogram,
    plan_duration: HistogramFamily,
    runs: Family<Labels, Counter>,
    held: Gauge,
    start_lag: Histogram,
}

impl EngineMetrics {
    /// Fresh metrics; `by_client` adds a `client` label to the work item
    /// counters (off by default: one series per client is unbounded).
    pub fn new(by_client: bool) -> Self {
        Self {
            by_client,
            planned: Family::default(),
            processed: Family::default(),
            errored: Family::default(),
            batches_claimed: Counter::default(),
            lease_takeovers: Counter::default(),
            batches_settled: Family::default(),
            batch_duration: histogram_family(),
            claim_latency: duration_histogram(),
            plan_duration: histogram_family(),
            runs: Family::default(),
            held: Gauge::default(),
            start_lag: lag_histogram(),
        }
    }

    fn job_labels(&self, job_type: &str, client: &str) -> Labels {
        let mut labels = vec![("job_type", job_type.to_string())];
        if self.by_client {
            labels.push(("client", client.to_string()));
        }
        labels
    }

    /// A job run was planned with `total` work items in `took`.
    pub fn planned(&self, job_type: &str, client: &str, total: u64, took: Duration) {
        self.planned
            .get_or_create(&self.job_labels(job_type, client))
            .inc_by(total);
        self.plan_duration
            .get_or_create(&vec![("job_type", job_type.to_string())])
            .observe(took.as_secs_f64());
    }

    /// A worker looked for a batch for `took`; `claimed` when it got one.
    pub fn claim(&self, took: Duration, claimed: bool) {
        self.claim_latency.observe(took.as_secs_f64());
        if claimed {
            self.batches_claimed.inc();
        }
    }

    /// A worker claimed a batch whose lease had expired under another
    /// worker (dead, or cut off from the database): a takeover.
    pub fn lease_taken_over(&self) {
        self.lease_takeovers.inc();
    }

    /// A claimed batch ended as `outcome` (`settled`, `retried`, `lost`)
    /// after `took`.
    pub fn batch_ended(&self, job_type: &str, outcome: &'static str, took: Duration) {
        self.batches_settled
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        self.batch_duration
            .get_or_create(&vec![("job_type", job_type.to_string())])
            .observe(took.as_secs_f64());
    }

    /// A settled batch's items: `processed` and `errored` of them.
    pub fn items_settled(&self, job_type: &str, client: &str, processed: u64, errored: u64) {
        let labels = self.job_labels(job_type, client);
        self.processed.get_or_create(&labels).inc_by(processed);
        self.errored.get_or_create(&labels).inc_by(errored);
    }

    /// The scheduler started an automatic run `lag` after its start
    /// instant.
    pub fn run_started(&self, lag: Duration) {
        self.runs
            .get_or_create(&vec![("outcome", "started".to_string())])
            .inc();
        self.start_lag.observe(lag.as_secs_f64());
    }

    /// The scheduler recorded a run as missed (past the catch-up window).
    pub fn run_missed(&self) {
        self.runs
            .get_or_create(&vec![("outcome", "missed".to_string())])
            .inc();
    }

    /// The scheduler's last tick held `count` due runs for an exception
    /// window.
    pub fn runs_held(&self, count: u64) {
        self.held.set(count as i64);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "work_items_planned",
            "Work items planned, by job type",
            self.planned.clone(),
        );
        registry.register(
            "work_items_processed",
            "Work items processed successfully, by job type",
            self.processed.clone(),
        );
        registry.register(
            "work_items_errored",
            "Work items that ended in error, by job type",
            self.errored.clone(),
        );
        registry.register(
            "batches_claimed",
            "Batches claimed by this process's workers",
            self.batches_claimed.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Batches this process's workers claimed from another worker whose lease had expired \
             (that worker died or lost the database); the batch runs again",
            self.lease_takeovers.clone(),
        );
        registry.register(
            "batches_ended",
            "Claimed batches by how they ended (settled, retried, lost to a takeover)",
            self.batches_settled.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time from claiming a batch to settling it, by job type",
            self.batch_duration.clone(),
        );
        registry.register(
            "claim_latency_seconds",
            "Time a worker's look for a claimable batch takes",
            self.claim_latency.clone(),
        );
        registry.register(
            "plan_duration_seconds",
            "Time planning a job run takes, by job type",
            self.plan_duration.clone(),
        );
        registry.register(
            "scheduler_runs",
            "Automatic runs the scheduler started or recorded as missed",
            self.runs.clone(),
        );
        registry.register(
            "scheduler_runs_held",
            "Due automatic runs held by an exception window at the last tick",
            self.held.clone(),
        );
        registry.register(
            "scheduler_start_lag_seconds",
            "Delay between an automatic run's start instant and its actual start",
            self.start_lag.clone(),
        );
    }
}

/// What the API layer records: requests by method and code, their latency,
/// calls in flight and open status streams. Cheap to clone.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<Labels, Counter>,
    latency: HistogramFamily,
    in_flight: Family<Labels, Gauge>,
    status_streams: Gauge,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: histogram_family(),
            in_flight: Family::default(),
            status_streams: Gauge::default(),
        }
    }
}

impl ApiMetrics {
    /// A call of `method` began; `stream` when it is a status stream.
    pub fn started(&self, method: &str, stream: bool) {
        self.in_flight
            .get_or_create(&vec![("method", method.to_string())])
            .inc();
        if stream {
            self.status_streams.inc();
        }
    }

    /// A call of `method` ended with gRPC `code` (its name) after `took`.
    pub fn finished(&self, method: &str, stream: bool, code: &str, took: Duration) {
        let method_label = vec![("method", method.to_string())];
        self.in_flight.get_or_create(&method_label).dec();
        if stream {
            self.status_streams.dec();
        }
        self.requests
            .get_or_create(&vec![
                ("method", method.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&method_label)
            .observe(took.as_secs_f64());
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_requests",
            "gRPC calls by method and status code",
            self.requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency by method (a stream: its whole life)",
            self.latency.clone(),
        );
        registry.register(
            "grpc_in_flight",
            "gRPC calls in progress by method",
            self.in_flight.clone(),
        );
        registry.register(
            "status_streams_open",
            "WatchExecutions status streams open now",
            self.status_streams.clone(),
        );
    }
}

/// Gauges computed when scraped: executions by status and phase, ready
/// batches waiting for a worker, and the connection pool.
#[derive(Clone, Default)]
pub struct ServiceGauges {
    /// Executions by `status` and `phase`.
    pub executions: Family<Labels, Gauge>,
    /// Ready batches of running jobs, waiting for a worker.
    pub ready_batches: Gauge,
    /// Batches claimed under a lease that has expired (their worker died).
    pub expired_leases: Gauge,
    /// Status events this process's event hub has broadcast that an open
    /// status stream of this process has not yet taken.
    pub events_pending: Gauge,
    /// The pool's connections: `size` (open), `available`, `max_size`, and
    /// `waiting` (requests waiting for one).
    pub pool: Family<Labels, Gauge>,
    /// Scrapes whose database gauges could not be read.
    pub refresh_failures: Counter,
}

impl ServiceGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "executions",
            "Executions by status and phase (read from the database when scraped)",
            self.executions.clone(),
        );
        registry.register(
            "ready_batches",
            "Ready batches of running jobs waiting for a worker",
            self.ready_batches.clone(),
        );
        registry.register(
            "expired_lease_batches",
            "Claimed batches whose lease expired (their worker stopped)",
            self.expired_leases.clone(),
        );
        registry.register(
            "events_pending_delivery",
            "Status events this process's event hub has read from the event table and broadcast \
             that at least one of its open status streams has not yet taken (at most 1024 per \
             client; a stream further behind reads the table itself and is not counted)",
            self.events_pending.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state (size, available, max_size, waiting)",
            self.pool.clone(),
        );
        registry.register(
            "gauge_refresh_failures",
            "Scrapes whose database gauges could not be read",
            self.refresh_failures.clone(),
        );
    }
}

/// Every metric of one server, registered under the `allegro_` prefix.
pub struct Metrics {
    registry: Registry,
    /// The gauges `/metrics` refreshes before encoding.
    pub gauges: ServiceGauges,
}

impl Metrics {
    /// Registers the engine's and the API's metrics and the scraped gauges.
    pub fn new(engine: &EngineMetrics, api: &ApiMetrics) -> Self {
        let mut registry = Registry::with_prefix("allegro");
        let gauges = ServiceGauges::default();
        engine.register(&mut registry);
        api.register(&mut registry);
        gauges.register(&mut registry);
        Self { registry, gauges }
    }

    /// The exposition in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
