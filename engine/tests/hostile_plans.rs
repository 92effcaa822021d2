//! Plugins that try to get an effect past a human: a plan that fails now and then,
//! a plan that changes between approval and execution, an action that calls itself
//! pure and is not, and requests that hide effects in a read. Each is contained:
//! nothing runs that a human did not approve, and nothing reaches the server.

mod common;

use serde_json::{Map, Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vigil_bundle::Bundle;
use vigil_core::action::{
    Action, ActionCall, ActionCatalog, ActionError, ActionInfo, ActionPlan, BoxFuture,
    PlannedEffect, Risk,
};
use vigil_exec::core::Catalog;
use vigil_exec::record::ExecutionStore;
use vigil_exec::record::{EventKind, ExecStatus};
use vigil_exec::{ExecError, Executor, Request};
use vigil_plugin_host::{Grants, HostOptions, InstanceConfig, Limits, PluginCatalog, PluginHost};
use vigil_store::Store;

/// An action whose plans come from a script, one per call, and that counts and
/// keeps what it was asked to execute.
#[derive(Debug)]
struct Scripted {
    info: ActionInfo,
    plans: Vec<Result<ActionPlan, ActionError>>,
    planned: AtomicUsize,
    executed: Mutex<Vec<ActionPlan>>,
}

impl Scripted {
    fn new(pure: bool, plans: Vec<Result<ActionPlan, ActionError>>) -> Arc<Self> {
        Arc::new(Scripted {
            info: ActionInfo {
                name: "evil/act".into(),
                description: "hostile".into(),
                idempotent: true,
                pure,
            },
            plans,
            planned: AtomicUsize::new(0),
            executed: Mutex::new(Vec::new()),
        })
    }
    fn executed(&self) -> Vec<ActionPlan> {
        self.executed.lock().expect("lock").clone()
    }
}

impl Action for Scripted {
    fn info(&self) -> &ActionInfo {
        &self.info
    }
    fn validate(&self, _: &Value) -> Result<(), ActionError> {
        Ok(())
    }
    fn plan<'a>(&'a self, _: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        let n = self.planned.fetch_add(1, Ordering::SeqCst);
        // The script's last entry repeats forever.
        let plan = self.plans[n.min(self.plans.len() - 1)].clone();
        Box::pin(async move { plan })
    }
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        self.executed.lock().expect("lock").push(call.plan);
        Box::pin(async { Ok(json!({ "done": true })) })
    }
}

fn plan(summary: &str, effect: &str, risk: Risk) -> ActionPlan {
    ActionPlan {
        summary: summary.into(),
        steps: vec![PlannedEffect {
            target: "http://127.0.0.1:9/x".into(),
            risk,
            reversible: true,
            effects: vec![effect.into()],
        }],
        preview: None,
    }
}

fn harmless() -> ActionPlan {
    plan(
        "read a status",
        "http:GET http://127.0.0.1:9/status",
        Risk::None,
    )
}

fn harmful() -> ActionPlan {
    plan(
        "delete everything",
        "http:DELETE http://127.0.0.1:9/all",
        Risk::None,
    )
}

struct Setup {
    executor: Executor,
    store: Store,
    _dir: tempfile::TempDir,
}

fn setup(catalog: Arc<dyn ActionCatalog>) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dir.path().join("store")).expect("store");
    Setup {
        executor: Executor::new(catalog, store.clone()),
        store,
        _dir: dir,
    }
}

fn with_action(action: Arc<dyn Action>) -> Arc<dyn ActionCatalog> {
    let mut c = Catalog::with_core();
    c.register(action);
    Arc::new(c)
}

fn request(runbook: &str, gate: bool) -> Request {
    let bundle = Bundle::from_source(std::path::Path::new("rb.yaml"), runbook);
    assert!(!bundle.has_errors(), "{:?}", bundle.diagnostics);
    let mut req = Request::manual(
        Arc::new(bundle.runbooks[0].clone()),
        runbook.to_string(),
        Map::new(),
        Value::Null,
    );
    req.gate = gate;
    req
}

const REQUIRED: &str = "apiVersion: vigil/v1\nkind: Runbook\nname: gated\nsteps:\n  - id: act\n    uses: evil/act\n    approval: required\n";

/// The plan hash the execution waits on.
fn waiting_hash(store: &Store, id: &str) -> String {
    store
        .events(id)
        .expect("events")
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::AwaitingApproval)
        .and_then(|e| e.output.as_ref())
        .and_then(|o| o["plan_hash"].as_str())
        .map(str::to_string)
        .expect("a plan hash")
}

#[tokio::test]
async fn a_plan_error_never_skips_the_approval() {
    // Fails when asked for the approval, succeeds right after.
    let action = Scripted::new(
        false,
        vec![Err(ActionError::Failed("flaky".into())), Ok(harmful())],
    );
    let s = setup(with_action(action.clone()));
    let report = s
        .executor
        .start(request(REQUIRED, false))
        .await
        .expect("runs");
    assert_eq!(report.status, ExecStatus::Failed, "{report:?}");
    assert!(
        report.steps[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("plan: flaky")),
        "{report:?}"
    );
    assert!(action.executed().is_empty(), "executed without approval");
    assert_eq!(action.planned.load(Ordering::SeqCst), 1, "planned once");
}

#[tokio::test]
async fn what_runs_is_the_plan_that_was_approved() {
    // Harmless for the approval, harmful from then on.
    let action = Scripted::new(false, vec![Ok(harmless()), Ok(harmful())]);
    let s = setup(with_action(action.clone()));
    let report = s
        .executor
        .start(request(REQUIRED, false))
        .await
        .expect("runs");
    assert_eq!(report.status, ExecStatus::AwaitingApproval);
    let first = waiting_hash(&s.store, &report.id);
    assert_eq!(first, harmless().approval_hash(&json!({})));

    // The human approves the harmless plan; the plugin now plans the harmful one:
    // the approval is void and the step waits again, nothing executed.
    let after = s
        .executor
        .decide_approval(&report.id, true, "alice", None, Some(&first))
        .await
        .expect("approve")
        .expect("resumed");
    assert_eq!(after.status, ExecStatus::AwaitingApproval, "{after:?}");
    assert!(action.executed().is_empty());
    let events = s.store.events(&report.id).expect("events");
    assert!(events.iter().any(|e| {
        e.kind == EventKind::Rejected
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("approval void"))
    }));
    let second = waiting_hash(&s.store, &report.id);
    assert_eq!(second, harmful().approval_hash(&json!({})));

    // Approving an old hash is refused; approving what is shown runs exactly that.
    let stale = s
        .executor
        .decide_approval(&report.id, true, "alice", None, Some(&first))
        .await
        .expect_err("stale approval");
    assert!(matches!(stale, ExecError::StalePlan { .. }), "{stale}");
    let done = s
        .executor
        .decide_approval(&report.id, true, "bob", None, Some(&second))
        .await
        .expect("approve")
        .expect("resumed");
    assert_eq!(done.status, ExecStatus::Succeeded, "{done:?}");
    let executed = action.executed();
    assert_eq!(executed.len(), 1);
    assert_eq!(executed[0].approval_hash(&json!({})), second);
}

#[tokio::test]
async fn a_policy_gate_holds_an_action_that_calls_itself_pure() {
    const POLICY: &str = "apiVersion: vigil/v1\nkind: Runbook\nname: gated\nsteps:\n  - id: act\n    uses: evil/act\n";
    // Says pure, plans an effect: gated like any effect.
    let liar = Scripted::new(true, vec![Ok(harmful())]);
    let s = setup(with_action(liar.clone()));
    let report = s.executor.start(request(POLICY, true)).await.expect("runs");
    assert_eq!(report.status, ExecStatus::AwaitingApproval, "{report:?}");
    assert!(liar.executed().is_empty());

    // Truly pure (no effect in its plan): runs without a human.
    let pure = Scripted::new(
        true,
        vec![Ok(ActionPlan {
            summary: "compute".into(),
            ..ActionPlan::default()
        })],
    );
    let s = setup(with_action(pure.clone()));
    let report = s.executor.start(request(POLICY, true)).await.expect("runs");
    assert_eq!(report.status, ExecStatus::Succeeded, "{report:?}");
    assert_eq!(pure.executed().len(), 1);
}

/// A TCP listener on 127.0.0.1 that counts the requests it gets, answering 200.
struct Listener {
    port: u16,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn listen() -> Listener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (h, r) = (hits.clone(), requests.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            h.fetch_add(1, Ordering::SeqCst);
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            if let Ok(mut r) = r.lock() {
                r.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    Listener {
        port,
        hits,
        requests,
    }
}

fn hostile_catalog(grants: Value) -> PluginCatalog {
    let host = PluginHost::new(HostOptions::default()).expect("host");
    let mut cat = PluginCatalog::new(host.clone());
    cat.add_plugin(
        host.load_file(&common::plugin_path("hostile"))
            .expect("load hostile"),
    )
    .expect("add");
    let grants: Grants = serde_json::from_value(grants).expect("grants");
    cat.add_instance(InstanceConfig {
        grants,
        limits: Limits {
            timeout_ms: 2_000,
            ..Limits::default()
        },
        ..InstanceConfig::bare("hostile")
    })
    .expect("instance");
    cat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_says_pure_and_posts_waits_for_a_human() {
    let srv = listen();
    let target = format!("http://127.0.0.1:{}/hook", srv.port);
    let cat = hostile_catalog(json!({
        "http": [{ "url": format!("http://127.0.0.1:{}/*", srv.port), "methods": ["GET", "POST"] }]
    }));
    let liar = cat.resolve("hostile/pure-liar").expect("action");
    assert!(liar.info().pure, "it says it is pure");
    let runbook = format!(
        "apiVersion: vigil/v1\nkind: Runbook\nname: liar\nsteps:\n  - id: act\n    uses: hostile/pure-liar\n    with: {{ target: \"{target}\" }}\n  - id: silent\n    uses: hostile/pure-silent\n    needs: [act]\n    with: {{ target: \"{target}\" }}\n"
    );
    let s = setup(Arc::new(cat));
    let report = s
        .executor
        .start(request(&runbook, true))
        .await
        .expect("runs");
    assert_eq!(report.status, ExecStatus::AwaitingApproval, "{report:?}");
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        0,
        "nothing may reach the server"
    );
    let hash = waiting_hash(&s.store, &report.id);
    let done = s
        .executor
        .decide_approval(&report.id, true, "alice", None, Some(&hash))
        .await
        .expect("approve")
        .expect("resumed");
    // Approved, the declared POST runs; the silent one's undeclared POST is denied.
    assert_eq!(done.status, ExecStatus::Failed, "{done:?}");
    let silent = done.steps.iter().find(|s| s.id == "silent").expect("step");
    assert!(
        silent
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("was not declared by the plan")),
        "{silent:?}"
    );
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1, "only the approved POST");
    let reqs = srv.requests.lock().expect("lock").clone();
    assert!(reqs[0].starts_with("POST /hook"), "{reqs:?}");
}

#[test]
fn reads_that_hide_effects_are_denied_even_in_a_dry_run() {
    let srv = listen();
    let base = format!("http://127.0.0.1:{}", srv.port);
    let cat = hostile_catalog(json!({
        "http": [{ "url": format!("{base}/api/*"), "methods": ["GET"] }]
    }));
    let inst = cat.instance("hostile").expect("instance");
    for (mode, url, why) in [
        (
            "get-with-body",
            format!("{base}/api/x"),
            "may not carry a body",
        ),
        (
            "method-override",
            format!("{base}/api/x"),
            "would change the method",
        ),
        ("host-header", format!("{base}/api/x"), "set by the host"),
        ("get", format!("{base}/api/../admin"), "not granted"),
        ("get", format!("{base}/api/%2e%2e/admin"), "not granted"),
        (
            "get",
            format!("{base}/api/%2E%2E%2Fadmin"),
            "a backend could split",
        ),
        (
            "get",
            format!("{base}/api/..%5cadmin"),
            "a backend could split",
        ),
        (
            "get",
            format!("http://127.0.0.1:{}@127.0.0.2/api/x", srv.port),
            "user info",
        ),
    ] {
        let input = json!({ "target": url });
        let err = inst.plan(mode, &input).expect_err(mode);
        assert!(err.to_string().contains(why), "{mode} {url}: {err}");
        let err = inst
            .execute(mode, &input, &ActionPlan::default())
            .expect_err(mode);
        assert!(err.to_string().contains(why), "{mode} {url}: {err}");
    }
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );
    // The same read, plain and inside the grant, goes through, normalised.
    let out = inst
        .plan(
            "get",
            &json!({ "target": format!("{base}/api/./v1/../x#frag") }),
        )
        .expect("a granted read");
    assert_eq!(out.summary, "read in plan");
    assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
    let reqs = srv.requests.lock().expect("lock").clone();
    assert!(reqs[0].starts_with("GET /api/x HTTP/1.1"), "{reqs:?}");
}

#[test]
fn a_plan_with_an_unknown_effect_fails_and_risk_has_a_floor() {
    let cat = hostile_catalog(json!({}));
    let inst = cat.instance("hostile").expect("instance");
    // `pure-liar` plans a POST with risk none: the host raises it to low.
    let plan = inst
        .plan("pure-liar", &json!({ "target": "http://127.0.0.1:9/x" }))
        .expect("plan");
    assert_eq!(plan.steps[0].risk, Risk::Low);
    assert!(plan.declares_effects());
}

#[tokio::test]
async fn a_plan_riskier_than_the_policy_saw_waits_for_a_human() {
    use vigil_core::action::Ceiling;
    const AUTO: &str = "apiVersion: vigil/v1\nkind: Runbook\nname: auto\nsteps:\n  - id: act\n    uses: evil/act\n";
    let low = Ceiling {
        risk: Risk::Low,
        reversible: true,
    };
    let auto = |ceiling| {
        let mut req = request(AUTO, false);
        req.ceiling = Some(ceiling);
        req
    };
    // The policy decided on a low-risk dry-run; at execution the plan is high.
    let action = Scripted::new(
        false,
        vec![Ok(plan(
            "drop the table",
            "http:POST http://127.0.0.1:9/drop",
            Risk::High,
        ))],
    );
    let s = setup(with_action(action.clone()));
    let report = s.executor.start(auto(low)).await.expect("runs");
    assert_eq!(report.status, ExecStatus::AwaitingApproval, "{report:?}");
    assert!(
        report
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("more than the low")),
        "{report:?}"
    );
    assert!(action.executed().is_empty());

    // Irreversible where the policy saw reversible: the same.
    let mut irreversible = plan("rotate", "http:POST http://127.0.0.1:9/rotate", Risk::Low);
    irreversible.steps[0].reversible = false;
    let action = Scripted::new(false, vec![Ok(irreversible)]);
    let s = setup(with_action(action.clone()));
    let report = s.executor.start(auto(low)).await.expect("runs");
    assert_eq!(report.status, ExecStatus::AwaitingApproval, "{report:?}");
    assert!(action.executed().is_empty());

    // Within what the policy saw, it runs on its own.
    let action = Scripted::new(
        false,
        vec![Ok(plan(
            "restart",
            "http:POST http://127.0.0.1:9/restart",
            Risk::Low,
        ))],
    );
    let s = setup(with_action(action.clone()));
    let report = s.executor.start(auto(low)).await.expect("runs");
    assert_eq!(report.status, ExecStatus::Succeeded, "{report:?}");
    assert_eq!(action.executed().len(), 1);
}

#[tokio::test]
async fn one_approval_does_not_cover_a_later_step_riskier_than_the_dry_run() {
    use vigil_core::action::Ceiling;
    // A policy asked for one approval of the execution (no step says
    // `approval: policy`); the dry-run it decided on was low risk.
    const GATED: &str = "apiVersion: vigil/v1\nkind: Runbook\nname: gated\nsteps:\n  - id: first\n    uses: evil/first\n  - id: second\n    uses: evil/act\n    needs: [first]\n";
    let first = Scripted::new(
        false,
        vec![Ok(plan(
            "restart",
            "http:POST http://127.0.0.1:9/restart",
            Risk::Low,
        ))],
    );
    let first = Arc::new(Scripted {
        info: ActionInfo {
            name: "evil/first".into(),
            ..first.info.clone()
        },
        plans: first.plans.clone(),
        planned: AtomicUsize::new(0),
        executed: Mutex::new(Vec::new()),
    });
    let second = Scripted::new(
        false,
        vec![Ok(plan(
            "drop everything",
            "http:POST http://127.0.0.1:9/drop",
            Risk::High,
        ))],
    );
    let mut c = Catalog::with_core();
    c.register(first.clone());
    c.register(second.clone());
    let s = setup(Arc::new(c));
    let mut req = request(GATED, true);
    req.ceiling = Some(Ceiling {
        risk: Risk::Low,
        reversible: true,
    });
    let report = s.executor.start(req).await.expect("runs");
    assert_eq!(report.status, ExecStatus::AwaitingApproval);
    let hash = waiting_hash(&s.store, &report.id);
    let after = s
        .executor
        .decide_approval(&report.id, true, "alice", None, Some(&hash))
        .await
        .expect("approve")
        .expect("resumed");
    // The approved first step ran; the riskier second one waits for its own approval.
    assert_eq!(first.executed().len(), 1);
    assert!(
        second.executed().is_empty(),
        "ran on the first step's approval"
    );
    assert_eq!(after.status, ExecStatus::AwaitingApproval, "{after:?}");
    assert!(
        after
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("`second` needs approval")),
        "{after:?}"
    );
}
