//! Behaviour tests in YAML: each file in `tests/behaviour/` is a runbook, then
//! `---`, then what must happen (status, reason, step statuses, attempts).

use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;
use vigil_bundle::Bundle;
use vigil_bundle::yaml::parse_documents;
use vigil_exec::core::Catalog;
use vigil_exec::{Executor, Request};
use vigil_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_behaviour_file_behaves_as_written() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/behaviour");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8);
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let (runbook_text, expect_text) = text
            .split_once("\n---\n")
            .expect("runbook --- expectations");
        let bundle = Bundle::from_source(&file, runbook_text);
        assert!(
            !bundle.has_errors(),
            "{}: {:?}",
            file.display(),
            bundle.diagnostics
        );
        let expect = parse_documents(expect_text).unwrap().remove(0).to_json();

        let work = tempfile::tempdir().unwrap();
        let store = Store::open(&work.path().join("store")).unwrap();
        let executor = Executor::new(Arc::new(Catalog::with_core()), store);
        let rb = bundle.runbooks[0].clone();
        let mut params = Map::new();
        if rb.params.iter().any(|p| p.name == "dir") {
            params.insert(
                "dir".into(),
                Value::String(work.path().display().to_string()),
            );
        }
        for p in &rb.params {
            if let (false, Some(d)) = (params.contains_key(&p.name), &p.default) {
                params.insert(p.name.clone(), d.clone());
            }
        }
        let req = Request::manual(Arc::new(rb), runbook_text.to_string(), params, Value::Null);
        let report = executor.start(req).await.unwrap();

        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!(
                    "{name}: {what}\n  report: {}",
                    serde_json::to_string(&report).unwrap()
                ));
            }
        };
        check(
            report.status.as_str() == expect["status"],
            format!("status {} != {}", report.status.as_str(), expect["status"]),
        );
        if let Some(r) = expect["reason_contains"].as_str() {
            check(
                report.reason.as_deref().is_some_and(|x| x.contains(r)),
                format!("reason {:?} lacks {r:?}", report.reason),
            );
        }
        for (id, status) in expect["steps"].as_object().into_iter().flatten() {
            let got = report
                .steps
                .iter()
                .find(|s| &s.id == id)
                .map(|s| serde_json::to_value(&s.status).unwrap());
            check(
                got.as_ref() == Some(status),
                format!("step {id}: {got:?} != {status}"),
            );
        }
        for (id, n) in expect["attempts"].as_object().into_iter().flatten() {
            let got = report
                .steps
                .iter()
                .find(|s| &s.id == id)
                .map(|s| s.attempts);
            check(
                got == n.as_u64().map(|n| n as u32),
                format!("attempts of {id}: {got:?} != {n}"),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
