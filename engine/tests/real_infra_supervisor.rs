//! The `supervisor` plugin against a real `supervisord` (Debian's package) on
//! 127.0.0.1, through `vigil run`: every action, checked against what
//! `supervisorctl` says; Supervisor's faults as clear errors; and hostile endpoints
//! (one that hangs, answers garbage, answers too much, or is not granted), each
//! contained with a clear error within the step's timeout.

mod common;
#[path = "fixtures/real_infra/support.rs"]
mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Behaviour, Bundle, Hostile, Supervisord};

const LIMIT: Duration = Duration::from_secs(40);

fn instance(name: &str, url: &str, grant: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: supervisor\n    config: {{ url: \"{url}\"{extra} }}\n    grants:\n      http: [{{ url: \"{grant}/RPC2\", methods: [POST] }}]\n"
    )
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

#[test]
fn every_action_agrees_with_supervisorctl() {
    let sup = Supervisord::start(&[true, true, false]);
    let url = sup.url();
    let b = Bundle::new(
        &format!("sources:\n{}", instance("sup", &url, &url, "")),
        &["supervisor"],
    );
    b.runbook(
        "actions",
        r#"apiVersion: vigil/v1
kind: Runbook
name: actions
steps:
  - id: all
    uses: sup/status
    assert: "${{ output.total == 3 && output.running == 2 && !output.all_running }}"
  - id: group
    uses: sup/status
    needs: [all]
    with: { group: web }
    assert: "${{ output.total == 3 }}"
  - id: stop
    uses: sup/stop
    needs: [group]
    with: { process: "web:web2" }
    assert: "${{ output.state == \"STOPPED\" && output.changed && output.undo.action == \"start\" }}"
  - id: stop-again
    uses: sup/stop
    needs: [stop]
    with: { process: "web:web2" }
    assert: "${{ output.state == \"STOPPED\" && !output.changed }}"
  - id: start
    uses: sup/start
    needs: [stop-again]
    with: { process: "web:web2" }
    assert: "${{ output.state == \"RUNNING\" && output.changed && output.pid > 0 }}"
  - id: start-again
    uses: sup/start
    needs: [start]
    with: { process: "web:web2" }
    assert: "${{ output.state == \"RUNNING\" && !output.changed }}"
  - id: restart
    uses: sup/restart
    needs: [start-again]
    with: { process: "web:web1" }
    assert: "${{ output.state == \"RUNNING\" && output.pids_before[\"web:web1\"] != output.pids_after[\"web:web1\"] }}"
  - id: tail
    uses: sup/tail
    needs: [restart]
    with: { process: "web:web1", bytes: 2000 }
    assert: "${{ output.log.contains(\"Serving HTTP on 127.0.0.1\") }}"
"#,
    );
    let (_, web1_before) = sup.status("web1");
    let out = b.vigil(&["run", "actions", "--output", "json"], LIMIT);
    let report = &out.json()["report"];
    assert_eq!(
        report["status"],
        "succeeded",
        "{report:#}\n{}\nsupervisord:\n{}",
        out.stderr,
        sup.log()
    );
    // Supervisor's own view agrees with what the steps said.
    let (state, web1_pid) = sup.status("web1");
    assert_eq!(state, "RUNNING");
    assert_ne!(web1_pid, web1_before, "web1 was restarted");
    assert_eq!(
        step(report, "restart")["output"]["pid"].as_u64(),
        web1_pid.map(u64::from)
    );
    let (state, web2_pid) = sup.status("web2");
    assert_eq!(state, "RUNNING");
    assert_eq!(
        step(report, "start")["output"]["pid"].as_u64(),
        web2_pid.map(u64::from)
    );
    assert_eq!(sup.state("web3"), "STOPPED");
    // The plans said what each step is.
    let plan = b.vigil(&["dry-run", "actions", "--output", "json"], LIMIT);
    let text = plan.stdout;
    for want in [
        format!("supervisor://127.0.0.1:{}/web:web1", sup.port),
        "undo: supervisor/start".into(),
        "cannot be undone".into(),
        format!("http:POST {url}/RPC2"),
    ] {
        assert!(text.contains(&want), "dry-run lacks {want:?}:\n{text}");
    }
}

#[test]
fn supervisor_faults_are_named_and_a_failed_start_shows_the_log() {
    let sup = Supervisord::start(&[true, false]);
    let url = sup.url();
    let b = Bundle::new(
        &format!("sources:\n{}", instance("sup", &url, &url, "")),
        &["supervisor"],
    );
    b.runbook(
        "bad-name",
        r#"apiVersion: vigil/v1
kind: Runbook
name: bad-name
steps:
  - id: start
    uses: sup/start
    retry: { attempts: 3, backoff: 1s }
    with: { process: "web1" }
"#,
    );
    let out = b.vigil(&["run", "bad-name", "--output", "json"], LIMIT);
    let report = &out.json()["report"];
    let s = step(report, "start");
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(s["attempts"], 1, "invalid input is not retried: {s:#}");
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("invalid input") && reason.contains("BAD_NAME: web1 (fault 10)"),
        "{reason}"
    );
    assert!(reason.contains("`group:name`"), "{reason}");

    // A broken deploy: the program exits at once; the start fails, naming Supervisor's
    // fault and the program's own last words.
    sup.set_broken("web2", true);
    b.runbook(
        "broken",
        r#"apiVersion: vigil/v1
kind: Runbook
name: broken
steps:
  - id: start
    uses: sup/start
    timeout: 15s
    with: { process: "web:web2" }
"#,
    );
    let out = b.vigil(&["run", "broken", "--output", "json"], LIMIT);
    let report = &out.json()["report"];
    let reason = step(report, "start")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(report["status"], "failed", "{report:#}");
    assert!(
        reason.contains("start web:web2")
            && (reason.contains("SPAWN_ERROR") || reason.contains("ABNORMAL_TERMINATION")),
        "{reason}"
    );
    assert!(
        reason.contains("web2: broken deploy, refusing to start"),
        "the error carries the program's stderr: {reason}"
    );
    assert_ne!(sup.state("web2"), "RUNNING");
    assert_eq!(sup.state("web1"), "RUNNING", "nothing else was touched");
}

/// An HTTP 200 answer carrying `body`.
fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// One hostile case: the step fails, within its timeout, with a message that says what
/// happened; returns the reason.
fn contained(b: &Bundle, name: &str, timeout_s: u64) -> String {
    let out = b.vigil(&["run", name, "--output", "json"], LIMIT);
    let report = &out.json()["report"];
    assert_eq!(
        report["status"], "failed",
        "{name}: {report:#}\n{}",
        out.stderr
    );
    let s = step(report, "status");
    let took = s["duration_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(
        took <= timeout_s * 1000 + 500,
        "{name}: the step took {took} ms, past its {timeout_s} s timeout"
    );
    assert!(
        out.elapsed < Duration::from_secs(timeout_s + 15),
        "{name}: vigil took {:?}",
        out.elapsed
    );
    let reason = s["reason"].as_str().unwrap_or_default().to_string();
    eprintln!("{name} ({took} ms): {reason}");
    reason
}

#[test]
fn hostile_endpoints_are_contained_with_clear_errors() {
    let hang = Hostile::start(Behaviour::Hang);
    let garbage = Hostile::start(Behaviour::Answer(http_ok(
        b"\x00\x01<methodResponse><params>\xff\xfe garbage",
    )));
    let not_http = Hostile::start(Behaviour::Answer(
        b"\x16\x03\x01 this is not HTTP at all\n".to_vec(),
    ));
    // 2 MiB of well-formed XML-RPC: past the plugin's 1 MiB, within the host's 8 MiB.
    let big = format!(
        "<?xml version='1.0'?><methodResponse><params><param><value><string>{}</string></value></param></params></methodResponse>",
        "x".repeat(2 << 20)
    );
    let big = Hostile::start(Behaviour::Answer(http_ok(big.as_bytes())));
    // An answer without end: the host stops reading at its limit.
    let flood = Hostile::start(Behaviour::Flood {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n<methodResponse>".to_vec(),
        filler: b'x',
    });
    let url = |h: &Hostile| format!("http://{}", h.addr);
    let granted_elsewhere = format!("http://127.0.0.1:{}", common::free_port());
    let mut sources = String::from("sources:\n");
    sources += &instance("sup-hang", &url(&hang), &url(&hang), ", timeout_ms: 1500");
    sources += &instance("sup-slow", &url(&hang), &url(&hang), ", timeout_ms: 60000");
    sources += &instance("sup-garbage", &url(&garbage), &url(&garbage), "");
    sources += &instance("sup-not-http", &url(&not_http), &url(&not_http), "");
    sources += &instance("sup-big", &url(&big), &url(&big), "");
    sources += &instance("sup-flood", &url(&flood), &url(&flood), "");
    sources += &instance("sup-ungranted", &url(&hang), &granted_elsewhere, "");
    let b = Bundle::new(&sources, &["supervisor"]);
    for (case, timeout) in [
        ("hang", 5),
        ("slow", 3),
        ("garbage", 5),
        ("not-http", 5),
        ("big", 5),
        ("flood", 10),
        ("ungranted", 5),
    ] {
        b.runbook(
            &format!("hostile-{case}"),
            &format!(
                "apiVersion: vigil/v1\nkind: Runbook\nname: hostile-{case}\nsteps:\n  - id: status\n    uses: sup-{case}/status\n    timeout: {timeout}s\n    with: {{ process: \"web:web1\" }}\n"
            ),
        );
    }

    let r = contained(&b, "hostile-hang", 5);
    assert!(
        r.contains(&format!(
            "supervisord at {}/RPC2: supervisor.getProcessInfo: no answer within 1500 ms",
            url(&hang)
        )),
        "hang: {r}"
    );
    // The plugin's own timeout is longer than the step's: the step's wins.
    let r = contained(&b, "hostile-slow", 3);
    assert!(r.contains("timed out after 3s"), "slow: {r}");
    let r = contained(&b, "hostile-garbage", 5);
    assert!(r.contains("the answer is not XML-RPC"), "garbage: {r}");
    let r = contained(&b, "hostile-not-http", 5);
    assert!(
        r.contains(&format!("{}/RPC2", url(&not_http))),
        "not http: {r}"
    );
    let r = contained(&b, "hostile-big", 5);
    assert!(
        r.contains("more than the 1048576 this plugin reads (max_response_kib)"),
        "big: {r}"
    );
    let r = contained(&b, "hostile-flood", 10);
    assert!(r.contains("limit 8388608 bytes"), "flood: {r}");
    let r = contained(&b, "hostile-ungranted", 5);
    assert!(
        r.contains("not granted")
            && r.contains(&format!(
                "grants: {{ http: [{{ url: \"{}/RPC2\", methods: [POST] }}] }}",
                url(&hang)
            )),
        "ungranted: {r}"
    );
}
