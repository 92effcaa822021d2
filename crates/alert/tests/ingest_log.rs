//! Acknowledged alerts survive a crash between the ingest log's flush and the
//! tables': opened again, the service redoes them from the log, once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_alert::store::AlertStore;
use vigil_alert::trigger::Trigger;
use vigil_alert::{AlertService, AlertStatus, Engine, IncomingAlert};
use vigil_bundle::model::{Alerting, TriggerMode};
use vigil_exec::core::Catalog;
use vigil_store::Store;
use vigil_telemetry::Metrics;

fn service(store: Store) -> Arc<AlertService> {
    let trigger = Trigger::new(
        Vec::new(),
        Arc::new(Catalog::with_core()),
        None,
        TriggerMode::Off,
    );
    AlertService::open(
        store,
        Engine::new(Alerting::default(), &Default::default()),
        trigger,
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

fn alert(name: &str) -> IncomingAlert {
    IncomingAlert {
        labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
        annotations: BTreeMap::new(),
        status: AlertStatus::Firing,
        starts_at_ms: None,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_only_in_the_log_are_redone_at_open_and_not_twice() {
    let dir = tempfile::tempdir().unwrap();
    // What a first life acknowledged: its state, as the log holds it.
    let records = {
        let scratch = tempfile::tempdir().unwrap();
        let svc = service(Store::open(scratch.path()).unwrap());
        svc.ingest(vec![alert("DiskFull"), alert("HighLatency")])
            .await
            .unwrap();
        svc.ingest(vec![alert("DiskFull")]).await.unwrap();
        svc.alerts(usize::MAX)
    };
    assert_eq!(records.len(), 2);
    {
        // The crash: the log has the records, the tables never got them.
        let store = Store::open(dir.path()).unwrap();
        let (log, redo) = store.redo_log("ingest-log").unwrap();
        assert!(redo.is_empty());
        let seq = log.append(&serde_json::to_vec(&records).unwrap()).unwrap();
        log.sync_to(seq).await.unwrap();
        assert!(store.alerts().unwrap().is_empty());
    }
    let store = Store::open(dir.path()).unwrap();
    let svc = service(store.clone());
    let mut back = svc.alerts(usize::MAX);
    back.sort_by_key(|a| a.fingerprint);
    let mut want = records.clone();
    want.sort_by_key(|a| a.fingerprint);
    assert_eq!(back, want, "redone as acknowledged: counts not doubled");
    assert_eq!(store.alerts().unwrap().len(), 2, "and in the tables now");
    drop(svc);
    drop(store);
    // Redone and flushed, the log has nothing left to redo.
    let store = Store::open(dir.path()).unwrap();
    let (_, redo) = store.redo_log("ingest-log").unwrap();
    assert!(redo.is_empty(), "{} records left", redo.len());
}
