//! One daemon, many clients: with `vigil serve` running on 127.0.0.1, the operational
//! commands reach it through its API as the person whose token they carry — status,
//! the kill switch, trigger, executions (list, show, approve, reject, cancel), audit,
//! promote, run by name. Roles are enforced, approvals go only to the approvers the
//! policy named, and the audit log names who acted.
#![allow(clippy::unwrap_used)]

mod common;

use common::agent;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
const VERA: &str = "vera-token-0123456789a";
const ADA: &str = "ada-token-0123456789abc";
const OLD: &str = "old-token-0123456789abc";

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    store: PathBuf,
    out: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bundle");
    std::fs::create_dir_all(root.join("runbooks")).unwrap();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::write(
        root.join("vigil.yaml"),
        "apiVersion: vigil/v1\nkind: Config\n\
         api:\n  principals:\n\
         \x20   - { name: alice, role: operator, token_env: ALICE_TOKEN }\n\
         \x20   - { name: bob, role: operator, token_env: BOB_TOKEN }\n\
         \x20   - { name: vera, role: viewer, token_env: VERA_TOKEN }\n\
         \x20   - { name: ada, role: admin, token_env: ADA_TOKEN }\n\
         \x20   - { name: olga, role: admin, token_env: OLD_TOKEN, expires: \"2020-01-01\" }\n\
         guardrails:\n  runbooks:\n    careful: { dry_run_first: 1 }\n\
         oncall:\n  sre: { members: [alice], shift: 7d, start: \"2026-01-05T09:00:00Z\" }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("policies/gate.rhai"),
        "fn decide(incident, plan) {\n  if \"labels\" in incident && incident.labels.mode == \"approve\" {\n    return #{ action: \"approve\", reason: \"a human must look\", notify: [oncall(\"sre\")], approvers: [oncall(\"sre\")] };\n  }\n  #{ action: \"auto\", reason: \"safe\" }\n}\n",
    )
    .unwrap();
    let out = dir.path().join("out.txt");
    std::fs::write(
        root.join("runbooks/fix.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Runbook\nname: fix\npolicy: gate\ntrigger:\n  match: {{ alertname: Broken }}\nparams:\n  content: {{ type: string, from: \"${{{{ incident.labels.content }}}}\", default: none }}\nsteps:\n  - id: act\n    uses: core/write\n    with: {{ path: \"{}\", content: \"${{{{ params.content }}}}\" }}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("runbooks/slow.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: slow\nsteps:\n  - id: wait\n    uses: core/sleep\n    with: { duration: 60s }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("runbooks/careful.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: careful\nsteps:\n  - id: say\n    uses: core/log\n    with: { message: hello }\n",
    )
    .unwrap();
    Setup {
        config: root.join("vigil.yaml"),
        store: dir.path().join("store"),
        out,
        _dir: dir,
    }
}

fn tokens(cmd: &mut Command) -> &mut Command {
    cmd.env("ALICE_TOKEN", ALICE)
        .env("BOB_TOKEN", BOB)
        .env("VERA_TOKEN", VERA)
        .env("ADA_TOKEN", ADA)
        .env("OLD_TOKEN", OLD)
        .env_remove("VIGIL_SERVER")
}

/// The daemon, killed when dropped.
struct Daemon {
    child: std::process::Child,
    base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(s: &Setup) -> Daemon {
    use std::io::BufRead;
    let mut child = tokens(&mut Command::new(env!("CARGO_BIN_EXE_vigil")))
        .arg("--config")
        .arg(&s.config)
        .arg("--store")
        .arg(&s.store)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-detectors"])
        .env_remove("VIGIL_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Daemon { child, base }
}

/// `vigil <args>` as the holder of `token`, finding the daemon by itself.
fn vigil(s: &Setup, token: &str, args: &[&str]) -> Output {
    tokens(&mut Command::new(env!("CARGO_BIN_EXE_vigil")))
        .arg("--config")
        .arg(&s.config)
        .arg("--store")
        .arg(&s.store)
        .args(args)
        .env("VIGIL_TOKEN", token)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn refused(o: &Output, says: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(says), "{err} should say {says}");
}

fn json_out(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

fn incident(s: &Setup, mode: &str, content: &str) -> String {
    let p = s
        .store
        .parent()
        .unwrap()
        .join(format!("incident-{mode}-{content}.json"));
    std::fs::write(
        &p,
        json!({ "labels": { "alertname": "Broken", "mode": mode, "content": content } })
            .to_string(),
    )
    .unwrap();
    p.display().to_string()
}

fn audit(s: &Setup, action: &str) -> Vec<Value> {
    json_out(&vigil(
        s,
        VERA,
        &["--output", "json", "audit", "--action", action],
    ))
    .as_array()
    .unwrap()
    .clone()
}

fn call(base: &str, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let url = format!("{base}{path}");
    let auth = format!("Bearer {token}");
    let mut resp = match method {
        "GET" => agent().get(&url).header("Authorization", &auth).call(),
        _ => agent()
            .post(&url)
            .header("Authorization", &auth)
            .content_type("application/json")
            .send(body.to_string().as_bytes()),
    }
    .unwrap();
    let code = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_cli_operates_a_running_daemon_as_the_person_whose_token_it_carries() {
    let s = setup();
    let d = serve(&s);

    // Status and reads work for a viewer, through the daemon.
    let st = json_out(&vigil(&s, VERA, &["--output", "json", "status"]));
    assert_eq!(st["daemon"], true, "{st}");
    assert!(st["paused"].is_null(), "{st}");
    assert!(ok(&vigil(&s, VERA, &["status"])).contains("running for"));

    // A viewer may not pause; an operator may, and the kill switch holds.
    refused(&vigil(&s, VERA, &["pause"]), "role `viewer`");
    ok(&vigil(&s, ALICE, &["pause", "--reason", "investigating"]));
    let st = json_out(&vigil(&s, VERA, &["--output", "json", "status"]));
    assert_eq!(st["paused"]["by"], "alice", "{st}");
    let t = json_out(&vigil(
        &s,
        ALICE,
        &[
            "--output",
            "json",
            "trigger",
            "--incident",
            &incident(&s, "auto", "first"),
        ],
    ));
    assert_eq!(t[0]["outcome"], "blocked", "{t}");
    assert!(!s.out.exists(), "a paused vigil started a remediation");
    assert!(audit(&s, "block").iter().any(|e| e["subject"] == "fix"));
    assert!(
        audit(&s, "pause")
            .iter()
            .any(|e| e["actor"] == "user:alice")
    );

    // Resumed, the next automatic remediation runs.
    ok(&vigil(&s, ALICE, &["resume"]));
    let t = json_out(&vigil(
        &s,
        ALICE,
        &[
            "--output",
            "json",
            "trigger",
            "--incident",
            &incident(&s, "auto", "second"),
        ],
    ));
    assert_eq!(t[0]["outcome"], "executed", "{t}");
    assert_eq!(t[0]["report"]["status"], "succeeded", "{t}");
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), "second");
    assert!(
        audit(&s, "resume")
            .iter()
            .any(|e| e["actor"] == "user:alice")
    );

    // The policy names alice (on call) as the approver: bob is refused and audited,
    // a stale plan hash changes nothing, alice's approval runs it.
    let t = json_out(&vigil(
        &s,
        ALICE,
        &[
            "--output",
            "json",
            "trigger",
            "--incident",
            &incident(&s, "approve", "third"),
        ],
    ));
    assert_eq!(t[0]["report"]["status"], "awaiting_approval", "{t}");
    let id = t[0]["report"]["id"].as_str().unwrap().to_string();
    let shown = json_out(&vigil(
        &s,
        VERA,
        &["--output", "json", "executions", "show", &id],
    ));
    assert_eq!(shown["execution"]["approvers"], json!(["alice"]), "{shown}");
    let listed = json_out(&vigil(
        &s,
        VERA,
        &["--output", "json", "executions", "list"],
    ));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["status"] == "awaiting_approval")
    );
    refused(
        &vigil(&s, BOB, &["executions", "approve", &id]),
        "may not decide",
    );
    refused(
        &vigil(&s, BOB, &["executions", "reject", &id]),
        "may not decide",
    );
    let refusals = audit(&s, "refuse");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|e| e["actor"] == "user:bob" && e["subject"] == id.as_str())
    );
    refused(
        &vigil(&s, VERA, &["executions", "approve", &id]),
        "role `viewer`",
    );
    refused(
        &vigil(
            &s,
            ALICE,
            &["executions", "approve", &id, "--plan-hash", "0000"],
        ),
        "the plan changed",
    );
    assert_eq!(
        std::fs::read_to_string(&s.out).unwrap(),
        "second",
        "nothing ran"
    );
    let approved = ok(&vigil(
        &s,
        ALICE,
        &["executions", "approve", &id, "--comment", "looked"],
    ));
    assert!(approved.contains("succeeded"), "{approved}");
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), "third");
    let approvals = audit(&s, "approve");
    assert!(
        approvals
            .iter()
            .any(|e| e["actor"] == "user:alice" && e["subject"] == id.as_str()),
        "{approvals:?}"
    );

    // Promote needs an admin.
    refused(
        &vigil(&s, ALICE, &["promote", "careful"]),
        "role `operator`",
    );
    refused(&vigil(&s, ADA, &["promote", "carefull"]), "did you mean");
    ok(&vigil(&s, ADA, &["promote", "careful"]));
    assert!(
        audit(&s, "promote")
            .iter()
            .any(|e| e["actor"] == "user:ada" && e["subject"] == "careful")
    );

    // Run by name: the daemon runs it and the CLI follows it to the end.
    let run = vigil(&s, ALICE, &["run", "fix", "--set", "content=fourth"]);
    let printed = ok(&run);
    assert!(printed.contains("succeeded"), "{printed}");
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), "fourth");
    assert!(
        audit(&s, "run")
            .iter()
            .any(|e| e["actor"] == "manual:alice")
    );

    // Cancel a run the daemon is driving.
    let (code, started) = call(
        &d.base,
        "POST",
        "/api/v1/runbooks/slow/run",
        ALICE,
        &json!({}),
    );
    assert_eq!(code, 202, "{started}");
    let slow = started["id"].as_str().unwrap().to_string();
    refused(
        &vigil(&s, VERA, &["executions", "cancel", &slow]),
        "role `viewer`",
    );
    let t0 = Instant::now();
    let c = json_out(&vigil(
        &s,
        BOB,
        &["--output", "json", "executions", "cancel", &slow],
    ));
    assert_eq!(c["cancelled"], "signalled", "{c}");
    loop {
        let (_, v) = call(
            &d.base,
            "GET",
            &format!("/api/v1/executions/{slow}"),
            VERA,
            &json!({}),
        );
        if v["execution"]["status"] == "cancelled" {
            assert!(
                v["execution"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("user:bob"),
                "{v}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    refused(
        &vigil(&s, BOB, &["executions", "cancel", &slow]),
        "already finished",
    );

    // Bad credentials: each a clear error, nothing changes.
    let (code, v) = call(&d.base, "GET", "/api/v1/status", OLD, &json!({}));
    assert_eq!(
        (code, v["error"].as_str()),
        (401, Some("token_expired")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("olga"), "{v}");
    let (code, v) = call(
        &d.base,
        "POST",
        "/api/v1/pause",
        "not-a-token-of-anyone-here",
        &json!({}),
    );
    assert_eq!(code, 403, "{v}");
    let (code, v) = call(
        &d.base,
        "GET",
        &format!("/api/v1/status?token={ADA}"),
        ADA,
        &json!({}),
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("token_in_url")),
        "{v}"
    );
    let (code, v) = call(
        &d.base,
        "POST",
        "/api/v1/runbooks/fix/promote",
        VERA,
        &json!({}),
    );
    assert_eq!((code, v["error"].as_str()), (403, Some("forbidden")), "{v}");
    let st = json_out(&vigil(&s, VERA, &["--output", "json", "status"]));
    assert!(st["paused"].is_null(), "{st}");
    // Bad requests from a right principal: a clear error each, nothing changes.
    refused(
        &vigil(&s, VERA, &["audit", "--action", "aprove"]),
        "approve",
    );
    let (code, v) = call(
        &d.base,
        "GET",
        "/api/v1/audit?action=aprove",
        VERA,
        &json!({}),
    );
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_query")),
        "{v}"
    );
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean `approve`"),
        "{v}"
    );
    // (method, path, token, body, status, the field the error names if any)
    let bad: [(&str, &str, &str, Value, u16, Option<&str>); 5] = [
        (
            "POST",
            "/api/v1/pause",
            ALICE,
            json!(["now"]),
            422,
            Some("(body)"),
        ),
        // An unknown field is refused, not ignored.
        (
            "POST",
            "/api/v1/pause",
            ALICE,
            json!({"reason": "x", "by": "ada"}),
            422,
            None,
        ),
        (
            "GET",
            "/api/v1/alerts?status=open",
            VERA,
            json!({}),
            400,
            None,
        ),
        (
            "POST",
            "/api/v1/runbooks/..%2Fetc/run",
            ALICE,
            json!({}),
            404,
            None,
        ),
        (
            "POST",
            "/api/v1/runbooks/fix/run",
            ALICE,
            json!({"params": {"nope": 1}}),
            422,
            Some("params"),
        ),
    ];
    for (method, path, token, body, status, field) in bad {
        let (code, v) = call(&d.base, method, path, token, &body);
        assert_eq!(code, status, "{method} {path}: {v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{method} {path}: {v}");
        }
    }
    let st = json_out(&vigil(&s, VERA, &["--output", "json", "status"]));
    assert!(st["paused"].is_null(), "{st}");

    // Silences and incidents name who acted, whatever a body claims.
    let (code, v) = call(
        &d.base,
        "POST",
        "/api/v1/silences",
        BOB,
        &json!({ "matchers": { "service": "db" }, "duration": "1h", "createdBy": "ada", "comment": "maintenance" }),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["created_by"], "bob", "{v}");
    assert_eq!(v["comment"], "maintenance (for ada)", "{v}");
    let sid = v["id"].as_str().unwrap().to_string();
    refused(
        &vigil(&s, VERA, &["silence", "expire", &sid]),
        "role `viewer`",
    );
    ok(&vigil(&s, BOB, &["silence", "expire", &sid]));
    let silences = audit(&s, "silence");
    assert_eq!(silences.len(), 2, "{silences:?}");
    assert!(
        silences
            .iter()
            .all(|e| e["actor"] == "user:bob" && e["subject"] == sid.as_str())
    );

    // Models and evaluation through the daemon: reads for a viewer, changes for an admin.
    assert!(ok(&vigil(&s, VERA, &["model", "list"])).contains("no models yet"));
    refused(
        &vigil(&s, VERA, &["model", "promote", "host@1"]),
        "role `viewer`",
    );
    refused(&vigil(&s, ADA, &["model", "promote", "host@1"]), "host");
    refused(
        &vigil(&s, ADA, &["model", "retrain", "host"]),
        "no detector in the bundle serves model `host`",
    );
    let e = json_out(&vigil(&s, VERA, &["--output", "json", "evaluate"]));
    assert_eq!(e, json!([]), "{e}");
    refused(
        &vigil(&s, VERA, &["evaluate", "--retrain"]),
        "role `viewer`",
    );
    let e = json_out(&vigil(
        &s,
        ADA,
        &["--output", "json", "evaluate", "--retrain"],
    ));
    assert_eq!(e["retrained"], json!([]), "{e}");
    refused(
        &vigil(&s, VERA, &["evaluate", "--window", "soon"]),
        "window",
    );

    assert!(ok(&vigil(&s, VERA, &["audit", "--verify"])).contains("every link holds"));

    // With the daemon gone, the same commands open the store themselves.
    drop(d);
    let st = json_out(&vigil(&s, VERA, &["--output", "json", "status"]));
    assert_eq!(st["daemon"], false, "{st}");
    let listed = json_out(&vigil(
        &s,
        VERA,
        &["--output", "json", "executions", "list"],
    ));
    assert!(listed.as_array().unwrap().len() >= 4, "{listed}");
    assert!(audit(&s, "cancel").iter().any(|e| e["actor"] == "user:bob"));
    let v = json_out(&vigil(&s, VERA, &["--output", "json", "audit", "--verify"]));
    assert!(
        v["broken"].is_null() && v["entries"].as_u64().unwrap() > 10,
        "{v}"
    );
}

#[test]
fn a_principal_with_a_bad_token_setup_stops_the_server_with_where_and_why() {
    let s = setup();
    let o = tokens(&mut Command::new(env!("CARGO_BIN_EXE_vigil")))
        .arg("--config")
        .arg(&s.config)
        .arg("--store")
        .arg(&s.store)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-detectors"])
        .env("BOB_TOKEN", "short")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("api.principals[1] (bob)") && err.contains("at least 16"),
        "{err}"
    );
}

#[test]
fn a_bad_bundle_on_reload_is_refused_and_the_running_one_stays() {
    let s = setup();
    let d = serve(&s);
    let runbooks = s.config.parent().unwrap().join("runbooks");
    std::fs::write(
        runbooks.join("bad.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: bad\nsteps:\n  - id: one\n    uses: core/log\n    wiht: { message: typo }\n",
    )
    .unwrap();
    refused(&vigil(&s, ALICE, &["reload"]), "role `operator`");
    let o = vigil(&s, ADA, &["reload"]);
    refused(&o, "bad.yaml:7:5");
    // The bundle that was serving still serves.
    assert!(ok(&vigil(&s, ALICE, &["run", "fix", "--set", "content=still"])).contains("succeeded"));
    assert_eq!(std::fs::read_to_string(&s.out).unwrap(), "still");
    let reloads = audit(&s, "reload");
    assert!(
        reloads
            .iter()
            .any(|e| e["actor"] == "user:ada"
                && e["outcome"].as_str().unwrap().starts_with("refused")),
        "{reloads:?}"
    );

    // Mended and with a new runbook, the reload takes; the new runbook runs.
    std::fs::remove_file(runbooks.join("bad.yaml")).unwrap();
    std::fs::write(
        runbooks.join("hello.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: hello\nsteps:\n  - id: one\n    uses: core/log\n    with: { message: hi }\n",
    )
    .unwrap();
    refused(&vigil(&s, ALICE, &["run", "hello"]), "no runbook `hello`");
    let v = json_out(&vigil(&s, ADA, &["--output", "json", "reload"]));
    assert_eq!(v["reloaded"], true, "{v}");
    assert_eq!(v["runbooks"], 4, "{v}");
    assert!(ok(&vigil(&s, ALICE, &["run", "hello"])).contains("succeeded"));

    // SIGHUP reloads the same way.
    std::fs::write(
        runbooks.join("again.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: again\nsteps:\n  - id: one\n    uses: core/log\n    with: { message: hi }\n",
    )
    .unwrap();
    let pid = d.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    while !audit(&s, "reload").iter().any(|e| {
        e["actor"] == "signal:SIGHUP" && e["outcome"].as_str().unwrap().starts_with("reloaded")
    }) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no reload after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok(&vigil(&s, ALICE, &["run", "again"])).contains("succeeded"));
    assert_eq!(call(&d.base, "GET", "/healthz", ALICE, &json!({})).0, 200);
}

#[test]
fn an_approval_notification_names_the_approvers_the_policy_chose() {
    let s = setup();
    let told = s.store.parent().unwrap().join("told.txt");
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&format!(
        "alerting:\n  runbooks: live\n  group_wait: 50ms\n  group_interval: 100ms\n\
         notifiers:\n  - name: pager\n    uses: core/write\n    on: [awaiting_approval]\n\
         \x20   with: {{ path: \"{}\", content: \"${{{{ outcome.runbook }}}} waits for ${{{{ outcome.approvers[0] }}}} (tell ${{{{ outcome.notify[0] }}}})\" }}\n",
        told.display()
    ));
    std::fs::write(&s.config, config).unwrap();
    let d = serve(&s);
    let body = json!({
        "version": "4", "status": "firing", "receiver": "vigil", "groupKey": "k",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
        "alerts": [{ "status": "firing", "labels": { "alertname": "Broken", "mode": "approve", "content": "x" } }]
    });
    let (code, v) = call(&d.base, "POST", "/api/v1/alerts", ALICE, &body);
    assert_eq!(code, 200, "{v}");
    let t0 = Instant::now();
    let incident = loop {
        let (_, list) = call(&d.base, "GET", "/api/v1/incidents", VERA, &json!({}));
        if let Some(i) = list.as_array().and_then(|l| {
            l.iter()
                .find(|i| !i["executions"].as_array().unwrap().is_empty())
        }) {
            break i.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{list}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = &incident["executions"][0];
    assert_eq!(run["status"], "awaiting_approval", "{incident}");
    assert_eq!(run["approvers"], json!(["alice"]), "{incident}");
    assert_eq!(run["notify"], json!(["alice"]), "{incident}");
    while !told.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the notifier was not told"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&told).unwrap(),
        "fix waits for alice (tell alice)"
    );
}
