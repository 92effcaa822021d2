//! Retention: a pruning pass removes what is older than each kind's keep — resolved
//! alerts and incidents (from memory and the store, journals with them), finished
//! executions with their journals, detections and forecasts — and nothing else.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vigil_alert::service::Options;
use vigil_alert::store::AlertStore;
use vigil_alert::trigger::Trigger;
use vigil_alert::{AlertService, AlertStatus, Engine, IncomingAlert};
use vigil_bundle::model::{Alerting, RetentionDoc, TriggerMode};
use vigil_core::duration::Duration as Keep;
use vigil_exec::core::Catalog;
use vigil_exec::record::{Event, EventKind, ExecStatus, ExecutionRecord, ExecutionStore};
use vigil_runtime::detectors::ForecastRecord;
use vigil_runtime::store::DetectorStore;
use vigil_store::Store;
use vigil_telemetry::Metrics;

fn alert(status: AlertStatus, ends_at_ms: Option<i64>) -> IncomingAlert {
    IncomingAlert {
        labels: BTreeMap::from([
            ("alertname".to_string(), "DiskFull".to_string()),
            ("service".to_string(), "db".to_string()),
        ]),
        annotations: BTreeMap::new(),
        status,
        starts_at_ms: None,
        ends_at_ms,
        generator_url: String::new(),
    }
}

fn execution(id: &str, status: ExecStatus, updated_ms: i64) -> ExecutionRecord {
    serde_json::from_value(json!({
        "id": id, "runbook": "rb", "runbook_file": "rb.yaml", "source": "", "inputs_key": id,
        "params": {}, "incident": null, "status": status, "created_ms": updated_ms,
        "updated_ms": updated_ms
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruning_pass_removes_what_is_past_its_keep_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The pipeline's clock runs 1,000× faster, so minutes pass in a test.
    let clock = vigil_core::Clock::scaled(vigil_core::now_ms(), 1000.0);
    let alerting = Alerting {
        group_wait: Keep::from_millis(1000),
        group_interval: Keep::from_millis(2000),
        ..Alerting::default()
    };
    let svc = AlertService::open_with(
        store.clone(),
        Engine::new(alerting, &Default::default()),
        Trigger::new(
            Vec::new(),
            Arc::new(Catalog::with_core()),
            None,
            TriggerMode::Off,
        ),
        Arc::new(Metrics::new()),
        Options {
            clock,
            ..Default::default()
        },
    )
    .unwrap();
    svc.ingest(vec![alert(AlertStatus::Firing, None)])
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    while svc.incidents(false, 10).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
        svc.tick().await.unwrap();
    }
    let now = clock.now_ms();
    svc.ingest(vec![alert(AlertStatus::Resolved, Some(now))])
        .await
        .unwrap();
    while svc.incidents(true, 10).len() == 1 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
        svc.tick().await.unwrap();
    }
    let incident = svc.incidents(false, 10)[0].id.clone();
    assert!(!store.incident_events(&incident).unwrap().is_empty());
    // A still-open incident and a running execution are never pruned, whatever their age.
    svc.ingest(vec![IncomingAlert {
        labels: BTreeMap::from([("alertname".to_string(), "Other".to_string())]),
        ..alert(AlertStatus::Firing, None)
    }])
    .await
    .unwrap();
    while svc.incidents(true, 10).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
        svc.tick().await.unwrap();
    }
    let wall = vigil_core::now_ms();
    store
        .put_execution(&execution(
            "ex-old",
            ExecStatus::Succeeded,
            wall - 10 * 86_400_000,
        ))
        .unwrap();
    store
        .append(
            "ex-old",
            Event::at(0, None, EventKind::ExecutionStarted, 0, None, None),
        )
        .unwrap();
    store
        .put_execution(&execution("ex-running", ExecStatus::Running, 0))
        .unwrap();
    store
        .put_execution(&execution("ex-new", ExecStatus::Failed, wall))
        .unwrap();
    let forecast = |made_at| ForecastRecord {
        detector: "disk".into(),
        labels: BTreeMap::new(),
        made_at,
        horizon_secs: 3600,
        t: made_at + 3600,
        value: 1.0,
        low: 0.0,
        high: 2.0,
    };
    let now_s = clock.now_ms() / 1000;
    store
        .put_forecasts(&[forecast(now_s - 40 * 86_400), forecast(now_s)])
        .unwrap();
    let audit_before = store.audit_entries().unwrap().len();

    // 20 simulated seconds later, with keeps of 10 s (and 1 day for the rest).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = RetentionDoc {
        alerts: Keep::from_millis(10_000),
        incidents: Keep::from_millis(10_000),
        executions: Keep::from_millis(86_400_000),
        ..RetentionDoc::default()
    };
    let pruned = vigil::daemon::prune_once(&svc, &r).await.unwrap();
    assert_eq!(
        (
            pruned.alerts,
            pruned.incidents,
            pruned.executions,
            pruned.forecasts
        ),
        (1, 1, 1, 1),
        "{pruned:?}"
    );
    assert!(
        svc.incidents(false, 10).iter().all(|i| i.id != incident),
        "forgotten in memory"
    );
    assert!(store.incident(&incident).is_err(), "and in the store");
    assert!(
        store.incident_events(&incident).unwrap().is_empty(),
        "with its journal"
    );
    assert_eq!(svc.incidents(true, 10).len(), 1, "the open one stays");
    let alerts: Vec<Value> = store
        .alerts()
        .unwrap()
        .iter()
        .map(|a| json!(a.labels["alertname"]))
        .collect();
    assert_eq!(alerts, vec![json!("Other")]);
    let left: Vec<String> = store
        .executions()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec!["ex-running", "ex-new"]);
    assert!(store.events("ex-old").unwrap().is_empty());
    assert_eq!(store.forecasts().unwrap().len(), 1);
    assert_eq!(
        store.audit_entries().unwrap().len(),
        audit_before,
        "the audit log is never pruned"
    );

    // A second pass finds nothing more; `0s` keeps a kind for ever.
    let again = vigil::daemon::prune_once(
        &svc,
        &RetentionDoc {
            alerts: Keep::from_millis(0),
            ..r
        },
    )
    .await
    .unwrap();
    assert_eq!(again, vigil::daemon::Pruned::default());
}
