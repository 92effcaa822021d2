//! Prometheus metrics (`/metrics`), the only home of `prometheus-client`; and a
//! channel for the [`Story`] of what vigil does, for narration.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

/// Every metric vigil exports. Cheap to share (`Arc<Metrics>`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub alerts_received: Counter,
    pub alerts_deduplicated: Counter,
    pub alerts_silenced: Counter,
    pub alerts_inhibited: Counter,
    pub alerts_active: Gauge,
    pub dedup_ratio: Gauge<f64, AtomicU64>,
    pub groups_flushed: Counter,
    pub incidents_opened: Counter,
    pub incidents_open: Gauge,
    pub executions: Family<Labels, Counter>,
    pub http_requests: Family<Labels, Counter>,
    pub ingest_seconds: Histogram,
    pub detector_runs: Family<Labels, Counter>,
    pub detector_points: Counter,
    pub detections: Family<Labels, Counter>,
    pub step_transitions: Family<Labels, Counter>,
    pub notifications: Family<Labels, Counter>,
    pub executions_resumed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vigil");
        let m = Metrics {
            alerts_received: Counter::default(),
            alerts_deduplicated: Counter::default(),
            alerts_silenced: Counter::default(),
            alerts_inhibited: Counter::default(),
            alerts_active: Gauge::default(),
            dedup_ratio: Gauge::default(),
            groups_flushed: Counter::default(),
            incidents_opened: Counter::default(),
            incidents_open: Gauge::default(),
            executions: Family::default(),
            http_requests: Family::default(),
            ingest_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            detector_runs: Family::default(),
            detector_points: Counter::default(),
            detections: Family::default(),
            step_transitions: Family::default(),
            notifications: Family::default(),
            executions_resumed: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "alerts_received",
            "Alerts received (webhook and events)",
            m.alerts_received.clone(),
        );
        registry.register(
            "alerts_deduplicated",
            "Alerts folded into an alert already known",
            m.alerts_deduplicated.clone(),
        );
        registry.register(
            "alerts_silenced",
            "Alerts muted by a silence",
            m.alerts_silenced.clone(),
        );
        registry.register(
            "alerts_inhibited",
            "Alerts muted by an inhibition rule",
            m.alerts_inhibited.clone(),
        );
        registry.register(
            "alerts_active",
            "Alerts tracked in memory",
            m.alerts_active.clone(),
        );
        registry.register(
            "alerts_dedup_ratio",
            "Share of received alerts that were duplicates",
            m.dedup_ratio.clone(),
        );
        registry.register(
            "alert_groups_flushed",
            "Alert group flushes (notifications to correlation)",
            m.groups_flushed.clone(),
        );
        registry.register(
            "incidents_opened",
            "Incidents opened",
            m.incidents_opened.clone(),
        );
        registry.register(
            "incidents_open",
            "Incidents not resolved",
            m.incidents_open.clone(),
        );
        registry.register(
            "executions",
            "Runbook executions started for incidents, by mode and outcome",
            m.executions.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "ingest_request_seconds",
            "Time to acknowledge an ingest request (durable)",
            m.ingest_seconds.clone(),
        );
        registry.register(
            "detector_runs",
            "Scheduled detector runs, by detector and outcome",
            m.detector_runs.clone(),
        );
        registry.register(
            "detector_points",
            "Points scored by scheduled detectors",
            m.detector_points.clone(),
        );
        registry.register(
            "detections",
            "Detections (firing or resolved), by detector",
            m.detections.clone(),
        );
        registry.register(
            "step_transitions",
            "Execution journal transitions, by kind",
            m.step_transitions.clone(),
        );
        registry.register(
            "notifications",
            "Notifications sent through notifiers, by notifier and outcome",
            m.notifications.clone(),
        );
        registry.register(
            "executions_resumed",
            "Unfinished executions resumed at start",
            m.executions_resumed.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn execution(&self, mode: &str, status: &str) {
        self.executions
            .get_or_create(&vec![
                ("mode".into(), mode.into()),
                ("status".into(), status.into()),
            ])
            .inc();
    }

    /// Counts into a family with one pair of labels per `(name, value)`.
    pub fn count(family: &Family<Labels, Counter>, labels: &[(&str, &str)]) {
        let key: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        family.get_or_create(&key).inc();
    }

    pub fn http(&self, route: &str, code: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("route".into(), route.into()),
                ("code".into(), code.to_string()),
            ])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

use std::sync::Arc;
use vigil_core::story::{Narrator, Story};

/// A narrator that forwards into a bounded channel and drops what does not fit
/// (a slow reader loses lines of the story, never slows the engine).
pub fn story_channel(capacity: usize) -> (Narrator, tokio::sync::mpsc::Receiver<Story>) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    let narrator: Narrator = Arc::new(move |s| {
        let _ = tx.try_send(s);
    });
    (narrator, rx)
}
