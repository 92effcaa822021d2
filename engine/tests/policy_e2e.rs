//! End-to-end: an incident matches a runbook whose policy asks for approval; the
//! execution waits across processes, a stale approval is refused, a fresh one
//! completes it; the circuit breaker opens after repeated failures; the audit log
//! shows every decision. Also runs the bundled policy test suite.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("runbooks")).unwrap();
        std::fs::create_dir_all(root.join("policies")).unwrap();
        std::fs::write(
            root.join("vigil.yaml"),
            "apiVersion: vigil/v1\nkind: Config\nstore: store\nguardrails:\n  runbooks:\n    flaky: { circuit_breaker: { failures: 2, window: 1h } }\n    careful: { dry_run_first: 1 }\n",
        )
        .unwrap();
        std::fs::write(
            root.join("policies/gate.rhai"),
            "fn decide(incident, plan) {\n  if incident.labels.mode == \"slow\" {\n    return #{ action: \"approve\", reason: \"quick, please\", timeout: \"1s\" };\n  }\n  if incident.labels.mode == \"approve\" {\n    return #{ action: \"approve\", reason: \"a human must look\", notify: [\"oncall\"] };\n  }\n  #{ action: \"auto\", reason: \"safe\" }\n}\n",
        )
        .unwrap();
        let out = root.join("out.txt");
        std::fs::write(
            root.join("runbooks/fix.yaml"),
            format!(
                "apiVersion: vigil/v1\nkind: Runbook\nname: fix\npolicy: gate\ntrigger:\n  match: {{ alertname: Broken }}\nparams:\n  content: {{ type: string, from: \"${{{{ incident.labels.content }}}}\", default: none }}\nsteps:\n  - id: prepare\n    uses: core/set\n    with: {{ text: \"${{{{ params.content }}}}\" }}\n  - id: act\n    uses: core/write\n    needs: [prepare]\n    with: {{ path: \"{}\", content: \"${{{{ steps.prepare.output.text }}}}\" }}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("runbooks/flaky.yaml"),
            "apiVersion: vigil/v1\nkind: Runbook\nname: flaky\ntrigger:\n  match: { alertname: Flaky }\nsteps:\n  - id: try\n    uses: core/fail\n    with: { message: still broken }\n",
        )
        .unwrap();
        std::fs::write(
            root.join("runbooks/careful.yaml"),
            format!("apiVersion: vigil/v1\nkind: Runbook\nname: careful\ntrigger:\n  match: {{ alertname: New }}\nsteps:\n  - id: act\n    uses: core/write\n    with: {{ path: \"{}\", content: acted }}\n", root.join("careful.txt").display()),
        )
        .unwrap();
        Bundle { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn vigil(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("--config")
            .arg(self.root().join("vigil.yaml"))
            .args(["--color", "never"])
            .args(args)
            .env("USER", "tester")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.vigil(&all);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    fn incident(&self, name: &str, labels: &str) -> PathBuf {
        let path = self.root().join(format!("{name}.json"));
        std::fs::write(&path, format!("{{\"labels\": {labels}}}")).unwrap();
        path
    }

    fn awaiting_hash(&self, id: &str) -> String {
        let shown = self.json(&["executions", "show", id]);
        let events = shown["events"].as_array().unwrap();
        let ev = events
            .iter()
            .rev()
            .find(|e| e["kind"] == "awaiting_approval")
            .expect("an awaiting_approval event");
        ev["output"]["plan_hash"].as_str().unwrap().to_string()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn approval_flow_stale_plans_circuit_breaker_and_audit() {
    let b = Bundle::new();
    let out_file = b.root().join("out.txt");

    // 1. The policy asks for approval: the execution waits, and nothing has acted.
    let inc_a = b.incident(
        "a",
        r#"{"alertname": "Broken", "mode": "approve", "content": "v1"}"#,
    );
    let o = b.vigil(&["trigger", "--incident", inc_a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("awaiting_approval"), "{}", text(&o));
    assert!(!out_file.exists(), "nothing may act before approval");
    let list = b.json(&["executions", "list"]);
    let a = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["status"], "awaiting_approval");
    let hash_a = b.awaiting_hash(&a);

    // 2. A second incident with different content: a different plan, another wait.
    let inc_b = b.incident(
        "b",
        r#"{"alertname": "Broken", "mode": "approve", "content": "v2"}"#,
    );
    assert!(
        b.vigil(&["trigger", "--incident", inc_b.to_str().unwrap()])
            .status
            .success()
    );
    let list = b.json(&["executions", "list"]);
    let bid = list[0]["id"].as_str().unwrap().to_string();
    assert_ne!(a, bid);
    let hash_b = b.awaiting_hash(&bid);
    assert_ne!(
        hash_a, hash_b,
        "different content must give a different plan hash"
    );

    // 3. Approving B with A's plan hash is refused as stale (exit 2), and B still waits.
    let o = b.vigil(&["executions", "approve", &bid, "--plan-hash", &hash_a]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("plan changed"), "{}", text(&o));
    assert_eq!(
        b.json(&["executions", "list"])[0]["status"],
        "awaiting_approval"
    );

    // 4. Approving A (each CLI call is a new process: the wait survived restarts).
    let o = b.vigil(&[
        "executions",
        "approve",
        &a,
        "--plan-hash",
        &hash_a,
        "--comment",
        "looks right",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "v1");
    let status_of = |id: &str| {
        b.json(&["executions", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of(&a), "succeeded");

    // 5. Rejecting B fails it without acting.
    assert!(
        b.vigil(&["executions", "reject", &bid, "--comment", "not now"])
            .status
            .success()
    );
    assert_eq!(status_of(&bid), "failed");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "v1");

    // 6. The circuit breaker: two failed automatic runs, then the third pages instead.
    let flaky = b.incident("flaky", r#"{"alertname": "Flaky"}"#);
    for _ in 0..2 {
        let o = b.vigil(&["trigger", "--incident", flaky.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("still broken"), "{}", text(&o));
    }
    let o = b.vigil(&["trigger", "--incident", flaky.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("circuit breaker open"), "{}", text(&o));
    let flaky_runs = b
        .json(&["executions", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["runbook"] == "flaky")
        .count();
    assert_eq!(
        flaky_runs, 2,
        "the open breaker must not start a third execution"
    );

    // 7. The kill switch blocks automatic runs until resumed.
    assert!(b.vigil(&["pause", "--reason", "game day"]).status.success());
    let inc_c = b.incident(
        "c",
        r#"{"alertname": "Broken", "mode": "auto", "content": "v3"}"#,
    );
    let o = b.vigil(&["trigger", "--incident", inc_c.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("paused by tester (game day)"),
        "{}",
        text(&o)
    );
    assert!(b.vigil(&["resume"]).status.success());
    let o = b.vigil(&["trigger", "--incident", inc_c.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "v3");

    // 8. The audit log has every decision, by whom, with plan hashes.
    let audit = b.json(&["audit", "--limit", "100"]);
    let entries = audit.as_array().unwrap();
    let has = |actor: &str, action: &str| {
        entries
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with(actor) && e["action"] == action)
    };
    assert!(has("policy:gate", "decide"));
    assert!(has("user:tester", "approve"));
    assert!(has("user:tester", "reject"));
    assert!(has("user:tester", "pause"));
    assert!(has("guardrail:kill-switch", "block"));
    assert!(has("guardrail:circuit-breaker", "page"));
    assert!(has("automatic:", "run"));
    let approve = entries.iter().find(|e| e["action"] == "approve").unwrap();
    assert_eq!(approve["plan_hash"].as_str(), Some(hash_a.as_str()));
    let decides = b.json(&["audit", "--action", "decide"]);
    assert!(
        decides
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["inputs"]["incident"]["labels"]["alertname"] == "Broken")
    );
}

#[test]
fn bundled_policy_suite_passes_and_hostile_policy_pages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--config")
        .arg(root.join("runbooks/vigil.yaml"))
        .args(["policy", "test", "--suite"])
        .arg(root.join("runbooks/policies/tests"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(" passed, 0 failed"), "{}", text(&o));

    let b = Bundle::new();
    std::fs::write(
        b.root().join("policies/loop.rhai"),
        "fn decide(incident, plan) {\n  loop { }\n}\n",
    )
    .unwrap();
    let o = b.vigil(&["policy", "test", "loop", "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "a fallback decision exits 1");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"]["action"], "page");
    assert_eq!(v["decision"]["fallback"], true);
    let reason = v["decision"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("loop.rhai") && reason.contains("operations"),
        "{v}"
    );
}

#[test]
fn approvals_time_out_into_paging_and_new_runbooks_dry_run_first() {
    let b = Bundle::new();
    // A policy that wants approval within 1s: past it, the wait ends in a page.
    let slow = b.incident(
        "slow",
        r#"{"alertname": "Broken", "mode": "slow", "content": "late"}"#,
    );
    assert!(
        b.vigil(&["trigger", "--incident", slow.to_str().unwrap()])
            .status
            .success()
    );
    let id = b.json(&["executions", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let o = b.vigil(&["executions", "approve", &id]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("waited too long for approval"),
        "{}",
        text(&o)
    );
    assert_eq!(b.json(&["executions", "list"])[0]["status"], "failed");
    assert!(!b.root().join("out.txt").exists());
    let pages = b.json(&["audit", "--actor", "guardrail:approval-timeout"]);
    assert_eq!(pages.as_array().unwrap().len(), 1);

    // dry_run_first: 1 — the first match only dry-runs, later ones act once promoted.
    let new = b.incident("new", r#"{"alertname": "New"}"#);
    let o = b.vigil(&["trigger", "--incident", new.to_str().unwrap()]);
    assert!(text(&o).contains("dry-run only"), "{}", text(&o));
    assert!(!b.root().join("careful.txt").exists());
    assert!(b.vigil(&["promote", "careful"]).status.success());
    let o = b.vigil(&["trigger", "--incident", new.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(b.root().join("careful.txt")).unwrap(),
        "acted"
    );
}
