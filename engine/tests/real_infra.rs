//! The real-infrastructure runbooks in `runbooks/examples/real-infra/` end to end, on
//! real parts: Debian's supervisord running instances of a small HTTP service (Python's
//! `http.server`) behind Debian's haproxy, all on 127.0.0.1, driven by the built `vigil`
//! through the `supervisor` and `haproxy` plugins.
//!
//! - drain → restart → verify → ready, while clients keep calling the frontend: the
//!   step outputs, the journal, `supervisorctl` and HAProxy's own socket agree, and no
//!   request fails;
//! - the same runbook when the restart fails (a broken deploy): the compensation puts the
//!   server back to ready, HAProxy's check keeps traffic off the dead instance;
//! - scale out (start a spare, make it ready) and scale in (drain, maintenance, stop);
//! - `vigil dry-run` of each runbook changes nothing Supervisor or HAProxy can see.

mod common;
#[path = "fixtures/real_infra/support.rs"]
mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Bundle, Haproxy, Load, Supervisord};

const LIMIT: Duration = Duration::from_secs(45);

/// web1 and web2 running and in rotation; web3 a spare: stopped, in maintenance.
struct Stack {
    sup: Supervisord,
    ha: Haproxy,
    bundle: Bundle,
}

fn stack() -> Stack {
    let sup = Supervisord::start(&[true, true, false]);
    let ha = Haproxy::start(&[
        ("web1", sup.program("web1").port, false),
        ("web2", sup.program("web2").port, false),
        ("web3", sup.program("web3").port, true),
    ]);
    support::wait_for(
        "web1 and web2 UP in HAProxy",
        Duration::from_secs(10),
        || ha.server("web1").status == "UP" && ha.server("web2").status == "UP",
    );
    let config = format!(
        "sources:\n\
         \x20 - name: supervisor\n    config: {{ url: \"{url}\" }}\n    grants:\n      http: [{{ url: \"{url}/RPC2\", methods: [POST] }}]\n\
         \x20 - name: haproxy\n    config: {{ address: \"{addr}\" }}\n    grants:\n      tcp: [{{ address: \"{addr}\" }}]\n",
        url = sup.url(),
        addr = ha.address()
    );
    let bundle = Bundle::new(&config, &["supervisor", "haproxy"]);
    let examples = common::workspace_root().join("runbooks/examples/real-infra/runbooks");
    for name in ["drain-restart", "scale-out", "scale-in"] {
        bundle.copy_runbook(&examples.join(format!("{name}.yaml")));
    }
    Stack { sup, ha, bundle }
}

/// What a change would show in Supervisor and HAProxy: each program's state and pid,
/// each server's admin state and weight.
/// Each program's (state, pid), and each server's (name, admin state, weight).
type World = (Vec<(String, Option<u32>)>, Vec<(String, i64, i64)>);

fn world(s: &Stack) -> World {
    let sup = ["web1", "web2", "web3"]
        .iter()
        .map(|p| s.sup.status(p))
        .collect();
    (sup, s.ha.snapshot())
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

/// The journal's (kind, step) entries of an execution.
fn journal(s: &Stack, id: &str) -> Vec<(String, String)> {
    let out = s
        .bundle
        .vigil(&["executions", "show", id, "--output", "json"], LIMIT);
    out.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["step"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has(journal: &[(String, String)], kind: &str, step: &str) -> bool {
    journal.iter().any(|(k, s)| k == kind && s == step)
}

fn run(s: &Stack, runbook: &str, server: &str) -> Value {
    let set = format!("server={server}");
    let out = s
        .bundle
        .vigil(&["run", runbook, "--set", &set, "--output", "json"], LIMIT);
    let v = out.json();
    eprintln!(
        "{runbook} {server}: {} in {:?}",
        v["report"]["status"], out.elapsed
    );
    v["report"].clone()
}

#[test]
fn dry_runs_change_nothing() {
    let s = stack();
    let before = world(&s);
    for (runbook, server) in [
        ("drain-restart", "web1"),
        ("scale-out", "web3"),
        ("scale-in", "web3"),
    ] {
        let set = format!("server={server}");
        let out = s.bundle.vigil(
            &["dry-run", runbook, "--set", &set, "--output", "json"],
            LIMIT,
        );
        assert_eq!(
            out.code,
            Some(0),
            "{runbook}: {}\n{}",
            out.stdout,
            out.stderr
        );
        let text = out.stdout;
        assert!(
            text.contains(&format!("haproxy://{}/app/{server}", s.ha.address()))
                && text.contains(&format!(
                    "supervisor://127.0.0.1:{}/web:{server}",
                    s.sup.port
                )),
            "{runbook}: the plan names both targets:\n{text}"
        );
        assert_eq!(
            world(&s),
            before,
            "{runbook}: the dry-run changed something"
        );
    }
    assert!(
        !s.sup.log().contains("stopped: web1") && !s.sup.log().contains("spawned: 'web3'"),
        "supervisord acted:\n{}",
        s.sup.log()
    );
}

#[test]
fn drain_restart_verify_ready_agrees_with_supervisor_and_haproxy() {
    let s = stack();
    let (_, web1_pid) = s.sup.status("web1");
    let (_, web2_pid) = s.sup.status("web2");
    let load = Load::start(s.ha.front_port);
    std::thread::sleep(Duration::from_millis(300));
    let report = run(&s, "drain-restart", "web1");
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.stop();
    assert_eq!(report["status"], "succeeded", "{report:#}\n{}", s.sup.log());

    // The steps' own view.
    assert_eq!(step(&report, "drain")["output"]["previous"], "ready");
    let restart = &step(&report, "restart")["output"];
    assert_ne!(
        restart["pids_before"]["web:web1"],
        restart["pids_after"]["web:web1"]
    );
    assert_eq!(
        step(&report, "healthy")["output"]["server"]["admin"],
        "drain"
    );
    assert_eq!(step(&report, "ready")["output"]["previous"], "drain");
    assert!(
        !report["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["id"] == "back-to-ready")),
        "the compensation did not run"
    );

    // Supervisor's view: web1 runs under a new pid, the one the step reported.
    let (state, pid) = s.sup.status("web1");
    assert_eq!(state, "RUNNING");
    assert_ne!(pid, web1_pid);
    assert_eq!(restart["pid"].as_u64(), pid.map(u64::from));
    assert_eq!(s.sup.status("web2"), ("RUNNING".to_string(), web2_pid));

    // HAProxy's view: web1 ready and up, web2 untouched.
    let web1 = s.ha.server("web1");
    assert_eq!((web1.admin, web1.op, web1.status.as_str()), (0, 2, "UP"));
    assert_eq!(s.ha.server("web2").admin, 0);

    // The journal: every effect journaled as started before it ran, and succeeded.
    let id = report["id"].as_str().expect("id");
    let j = journal(&s, id);
    for st in ["drain", "restart", "running", "healthy", "ready"] {
        assert!(
            has(&j, "started", st) && has(&j, "succeeded", st),
            "{st}: {j:?}"
        );
    }
    let order: Vec<&str> = j
        .iter()
        .filter(|(k, _)| k == "succeeded")
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        order,
        ["before", "drain", "restart", "running", "healthy", "ready"],
        "{j:?}"
    );
    assert!(!j.iter().any(|(k, _)| k == "compensated"), "{j:?}");
    assert_eq!(
        j.last().map(|(k, _)| k.as_str()),
        Some("execution_finished")
    );

    // Clients never noticed: web1 was out of rotation while it restarted.
    assert!(ok > 20, "only {ok} requests went through");
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );
}

#[test]
fn a_failed_restart_is_compensated_back_to_ready() {
    let s = stack();
    let (_, web2_pid) = s.sup.status("web2");
    // A broken deploy: web1's next start exits at once.
    s.sup.set_broken("web1", true);
    let report = run(&s, "drain-restart", "web1");
    assert_eq!(report["status"], "failed", "{report:#}");
    let reason = report["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("back-to-ready") && reason.contains("restart"),
        "{reason}"
    );
    let restart = step(&report, "restart");
    assert_eq!(restart["status"], "failed");
    let why = restart["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("it was stopped and did not start again")
            && why.contains("web1: broken deploy, refusing to start"),
        "{why}"
    );
    assert_eq!(step(&report, "back-to-ready")["status"], "compensated");
    assert_eq!(
        step(&report, "back-to-ready")["output"]["previous"],
        "drain"
    );
    for later in ["running", "healthy", "ready"] {
        assert_eq!(step(&report, later)["status"], "skipped", "{later}");
    }

    // The journal says so.
    let j = journal(&s, report["id"].as_str().expect("id"));
    assert!(has(&j, "failed", "restart"), "{j:?}");
    assert!(
        has(&j, "started", "back-to-ready") && has(&j, "compensated", "back-to-ready"),
        "{j:?}"
    );
    for later in ["running", "healthy", "ready"] {
        assert!(has(&j, "skipped", later), "{later}: {j:?}");
    }

    // Supervisor: web1 is down (not RUNNING), web2 untouched.
    assert_ne!(s.sup.state("web1"), "RUNNING");
    assert_eq!(s.sup.status("web2"), ("RUNNING".to_string(), web2_pid));
    // HAProxy: web1 is back to ready, not drained, and its check keeps traffic off it.
    support::wait_for("HAProxy to see web1 down", Duration::from_secs(5), || {
        let w = s.ha.server("web1");
        w.admin == 0 && w.status == "DOWN"
    });
    assert_eq!(s.ha.server("web2").status, "UP");
    for _ in 0..10 {
        assert_eq!(s.ha.get_through(), 200, "web2 serves every request");
    }

    // Fixed, the same runbook succeeds.
    s.sup.set_broken("web1", false);
    let report = run(&s, "drain-restart", "web1");
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(s.sup.state("web1"), "RUNNING");
    support::wait_for("web1 UP again", Duration::from_secs(5), || {
        s.ha.server("web1").status == "UP"
    });
}

#[test]
fn scale_out_then_back_in() {
    let s = stack();
    let web3 = s.ha.server("web3");
    assert_eq!((web3.admin, web3.status.as_str()), (1, "MAINT"));
    assert_eq!(s.sup.state("web3"), "STOPPED");

    let report = run(&s, "scale-out", "web3");
    assert_eq!(report["status"], "succeeded", "{report:#}\n{}", s.sup.log());
    assert_eq!(step(&report, "ready")["output"]["previous"], "maint");
    let (state, pid) = s.sup.status("web3");
    assert_eq!(state, "RUNNING");
    assert_eq!(
        step(&report, "start")["output"]["pid"].as_u64(),
        pid.map(u64::from)
    );
    let web3 = s.ha.server("web3");
    assert_eq!((web3.admin, web3.op, web3.status.as_str()), (0, 2, "UP"));
    // It takes its share of the traffic.
    for _ in 0..12 {
        assert_eq!(s.ha.get_through(), 200);
    }
    assert!(s.ha.server("web3").served > 0, "web3 served nothing");

    let report = run(&s, "scale-in", "web3");
    assert_eq!(report["status"], "succeeded", "{report:#}\n{}", s.sup.log());
    assert_eq!(step(&report, "drain")["output"]["previous"], "ready");
    assert_eq!(s.sup.state("web3"), "STOPPED");
    let web3 = s.ha.server("web3");
    assert_eq!((web3.admin, web3.status.as_str()), (1, "MAINT"));
    for server in ["web1", "web2"] {
        assert_eq!(s.ha.server(server).status, "UP");
        assert_eq!(s.sup.state(server), "RUNNING");
    }
    // Scale-in never takes out the last server up: with web2 stopped, web1 stays.
    s.sup.ctl(&["stop", "web:web2"]);
    support::wait_for("HAProxy to see web2 down", Duration::from_secs(5), || {
        s.ha.server("web2").status == "DOWN"
    });
    let report = run(&s, "scale-in", "web1");
    assert_eq!(report["status"], "failed", "{report:#}");
    assert_eq!(step(&report, "before")["status"], "failed");
    assert_eq!(step(&report, "drain")["status"], "skipped");
    assert_eq!(s.ha.server("web1").admin, 0);
    assert_eq!(s.sup.state("web1"), "RUNNING");
}
