//! Cancelling one execution by id: a running one stops at once with its step
//! cancelled, a finished one is refused, and the audit log names who cancelled.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_bundle::Bundle;
use vigil_core::audit::AuditAction;
use vigil_exec::core::Catalog;
use vigil_exec::record::{ExecStatus, ExecutionStore};
use vigil_exec::{Cancelled, ExecError, Executor, Request};
use vigil_store::Store;

const SLOW: &str = "apiVersion: vigil/v1\nkind: Runbook\nname: slow\nsteps:\n  - id: wait\n    uses: core/sleep\n    with: { duration: 30s }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_stops_when_cancelled_and_a_finished_one_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = Bundle::from_source(&dir.path().join("slow.yaml"), SLOW);
    assert!(!bundle.has_errors(), "{:?}", bundle.diagnostics);
    let store = Store::open(&dir.path().join("store")).unwrap();
    let executor = Executor::new(Arc::new(Catalog::with_core()), store.clone());
    let req = Request::manual(
        Arc::new(bundle.runbooks[0].clone()),
        SLOW.into(),
        Default::default(),
        serde_json::Value::Null,
    );
    let (id, task) = executor.start_detached(req).unwrap();
    // Journaled before the answer: a client can follow it at once.
    assert_eq!(store.execution(&id).unwrap().status, ExecStatus::Running);
    let t = Instant::now();
    while executor.in_flight().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(executor.in_flight(), vec![id.clone()]);

    assert_eq!(
        executor.cancel(&id, "alice").await.unwrap(),
        Cancelled::Signalled
    );
    let report = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a 30 s sleep is cut short")
        .unwrap()
        .unwrap();
    assert_eq!(report.status, ExecStatus::Cancelled);
    assert!(
        report.reason.as_deref().unwrap().contains("user:alice"),
        "{:?}",
        report.reason
    );
    assert_eq!(store.execution(&id).unwrap().status, ExecStatus::Cancelled);
    assert!(executor.in_flight().is_empty());

    match executor.cancel(&id, "bob").await {
        Err(ExecError::Finished(_, "cancelled")) => {}
        other => panic!("{other:?}"),
    }
    let audit = store.audit_entries().unwrap();
    let cancels: Vec<_> = audit
        .iter()
        .filter(|e| e.action == AuditAction::Cancel)
        .collect();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].actor, "user:alice");
    assert_eq!(cancels[0].subject, id);
}
