//! The `haproxy` plugin against a real `haproxy` (Debian's package) on 127.0.0.1, its
//! runtime API on a TCP stats socket at admin level, through `vigil run`: reading a
//! backend, drain, maint, ready and weights, each checked against what HAProxy's own
//! socket says; HAProxy's refusals as clear errors; and hostile endpoints (one that
//! hangs, answers garbage, answers too much, or is not granted, however its address is
//! spelt), each contained with a clear error within the step's timeout.

mod common;
#[path = "fixtures/real_infra/support.rs"]
mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Behaviour, Bundle, Haproxy, Hostile, Supervisord};

const LIMIT: Duration = Duration::from_secs(40);

fn instance(name: &str, address: &str, grant: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    plugin: haproxy\n    config: {{ address: \"{address}\"{extra} }}\n    grants:\n      tcp: [{{ address: \"{grant}\" }}]\n"
    )
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

fn run(b: &Bundle, runbook: &str) -> Value {
    let out = b.vigil(&["run", runbook, "--output", "json"], LIMIT);
    let report = out.json()["report"].clone();
    assert_eq!(
        report["status"], "succeeded",
        "{runbook}: {report:#}\n{}",
        out.stderr
    );
    report
}

/// Two instances of the service under supervisord, behind HAProxy.
fn stack() -> (Supervisord, Haproxy) {
    let sup = Supervisord::start(&[true, true]);
    let ha = Haproxy::start(&[
        ("web1", sup.program("web1").port, false),
        ("web2", sup.program("web2").port, false),
    ]);
    support::wait_for(
        "both servers UP in HAProxy",
        Duration::from_secs(10),
        || ha.server("web1").status == "UP" && ha.server("web2").status == "UP",
    );
    (sup, ha)
}

#[test]
fn every_action_agrees_with_haproxys_own_socket() {
    let (_sup, ha) = stack();
    let addr = ha.address();
    let b = Bundle::new(
        &format!("sources:\n{}", instance("lb", &addr, &addr, "")),
        &["haproxy"],
    );
    b.runbook(
        "shift",
        r#"apiVersion: vigil/v1
kind: Runbook
name: shift
steps:
  - id: read
    uses: lb/servers
    with: { backend: app }
    assert: "${{ output.total == 2 && output.up == 2 }}"
  - id: drain
    uses: lb/set-state
    needs: [read]
    with: { backend: app, server: web1, state: drain }
    assert: "${{ output.previous == \"ready\" && output.server.admin == \"drain\" && output.changed && output.undo.input.state == \"ready\" }}"
  - id: drain-again
    uses: lb/set-state
    needs: [drain]
    with: { backend: app, server: web1, state: drain }
    assert: "${{ !output.changed }}"
  - id: seen
    uses: lb/servers
    needs: [drain-again]
    with: { backend: app, server: web1 }
    assert: "${{ output.server.status == \"DRAIN\" && output.server.health == \"up\" }}"
  - id: weigh
    uses: lb/set-weight
    needs: [seen]
    with: { backend: app, server: web2, weight: 50 }
    assert: "${{ output.previous_weight == 1 && output.server.weight == 50 }}"
"#,
    );
    let before = ha.snapshot();
    let report = run(&b, "shift");
    let web1 = ha.server("web1");
    assert_eq!((web1.admin, web1.status.as_str()), (8, "DRAIN"), "{web1:?}");
    assert_eq!(ha.server("web2").weight, 50);
    assert_eq!(ha.get_through(), 200, "web2 still serves");
    assert_eq!(
        step(&report, "read")["output"]["servers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    b.runbook(
        "maint",
        r#"apiVersion: vigil/v1
kind: Runbook
name: maint
steps:
  - id: maint
    uses: lb/set-state
    with: { backend: app, server: web1, state: maint }
    assert: "${{ output.previous == \"drain\" && output.server.admin == \"maint\" && output.server.health == \"down\" }}"
"#,
    );
    run(&b, "maint");
    let web1 = ha.server("web1");
    assert_eq!((web1.admin, web1.status.as_str()), (1, "MAINT"), "{web1:?}");

    b.runbook(
        "back",
        r#"apiVersion: vigil/v1
kind: Runbook
name: back
steps:
  - id: ready
    uses: lb/set-state
    with: { backend: app, server: web1, state: ready }
    assert: "${{ output.previous == \"maint\" && output.server.admin == \"ready\" }}"
  - id: weigh
    uses: lb/set-weight
    with: { backend: app, server: web2, weight: 1 }
    assert: "${{ output.previous_weight == 50 }}"
"#,
    );
    run(&b, "back");
    support::wait_for("web1 UP again", Duration::from_secs(5), || {
        ha.server("web1").status == "UP"
    });
    assert_eq!(ha.snapshot(), before, "everything is as it was");

    // The plans said what each step is, and a dry-run changed nothing.
    let plan = b.vigil(&["dry-run", "shift"], LIMIT);
    for want in [
        format!("haproxy://{addr}/app/web1"),
        r#"undo: haproxy/set-state {"backend":"app","server":"web1","state":"ready"}"#.into(),
        format!("tcp:{addr}"),
    ] {
        assert!(
            plan.stdout.contains(&want),
            "dry-run lacks {want:?}:\n{}",
            plan.stdout
        );
    }
    assert_eq!(ha.snapshot(), before, "the dry-run changed nothing");
}

#[test]
fn haproxys_refusals_are_clear() {
    let (_sup, ha) = stack();
    let addr = ha.address();
    let b = Bundle::new(
        &format!("sources:\n{}", instance("lb", &addr, &addr, "")),
        &["haproxy"],
    );
    for (name, with, want) in [
        (
            "no-server",
            "{ backend: app, server: web9, state: drain }",
            "backend app has no server web9".to_string(),
        ),
        (
            "no-backend",
            "{ backend: nope, server: web1, state: drain }",
            format!(
                "HAProxy at {addr}: `show servers state nope` answered \"Can't find backend.\""
            ),
        ),
    ] {
        b.runbook(
            name,
            &format!(
                "apiVersion: vigil/v1\nkind: Runbook\nname: {name}\nsteps:\n  - id: set\n    uses: lb/set-state\n    with: {with}\n"
            ),
        );
        let out = b.vigil(&["run", name, "--output", "json"], LIMIT);
        let report = &out.json()["report"];
        let reason = step(report, "set")["reason"].as_str().unwrap_or_default();
        assert_eq!(report["status"], "failed", "{report:#}");
        assert!(reason.contains(&want), "{name}: {reason}");
    }
    // A name that would smuggle a second command never reaches the socket.
    b.runbook(
        "smuggle",
        "apiVersion: vigil/v1\nkind: Runbook\nname: smuggle\nsteps:\n  - id: set\n    uses: lb/set-state\n    with: { backend: app, server: \"web1;shutdown sessions server app/web2\", state: ready }\n",
    );
    let out = b.vigil(&["run", "smuggle", "--output", "json"], LIMIT);
    let reason = step(&out.json()["report"], "set")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("';' is not allowed"), "{reason}");
    assert_eq!(ha.server("web1").admin, 0);
}

fn contained(b: &Bundle, name: &str, timeout_s: u64) -> String {
    let out = b.vigil(&["run", name, "--output", "json"], LIMIT);
    let report = &out.json()["report"];
    assert_eq!(
        report["status"], "failed",
        "{name}: {report:#}\n{}",
        out.stderr
    );
    let s = step(report, "read");
    let took = s["duration_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(
        took <= timeout_s * 1000 + 500,
        "{name}: the step took {took} ms, past its {timeout_s} s timeout"
    );
    let reason = s["reason"].as_str().unwrap_or_default().to_string();
    eprintln!("{name} ({took} ms): {reason}");
    reason
}

#[test]
fn hostile_endpoints_are_contained_with_clear_errors() {
    let hang = Hostile::start(Behaviour::Hang);
    // An HTTP server where the stats socket should be.
    let garbage = Hostile::start(Behaviour::Answer(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    ));
    let binary = Hostile::start(Behaviour::Answer(vec![0xff, 0xfe, 0x00, 0x9c, b'\n']));
    let mut table = String::from("1\n# be_id be_name srv_id srv_name\n");
    while table.len() < 2 << 20 {
        table.push_str("3 app 1 web1\n");
    }
    let big = Hostile::start(Behaviour::Answer(table.into_bytes()));
    let flood = Hostile::start(Behaviour::Flood {
        head: b"1\n# be_id be_name\n".to_vec(),
        filler: b'x',
    });
    let port = |h: &Hostile| h.addr.rsplit(':').next().unwrap_or("").to_string();
    let mut sources = String::from("sources:\n");
    sources += &instance("lb-hang", &hang.addr, &hang.addr, ", timeout_ms: 1500");
    sources += &instance("lb-slow", &hang.addr, &hang.addr, ", timeout_ms: 60000");
    sources += &instance("lb-garbage", &garbage.addr, &garbage.addr, "");
    sources += &instance("lb-binary", &binary.addr, &binary.addr, "");
    sources += &instance("lb-big", &big.addr, &big.addr, "");
    sources += &instance("lb-flood", &flood.addr, &flood.addr, "");
    sources += &instance(
        "lb-ungranted",
        &hang.addr,
        &format!("127.0.0.1:{}", common::free_port()),
        "",
    );
    // Another spelling of the granted address is the granted address…
    sources += &instance(
        "lb-spelt",
        &format!("0x7f.0.0.1:{}", port(&garbage)),
        &garbage.addr,
        "",
    );
    // …but another host that reaches the same socket is not.
    sources += &instance(
        "lb-other-host",
        &format!("localhost:{}", port(&garbage)),
        &garbage.addr,
        "",
    );
    let b = Bundle::new(&sources, &["haproxy"]);
    let cases = [
        ("hang", 5),
        ("slow", 3),
        ("garbage", 5),
        ("binary", 5),
        ("big", 5),
        ("flood", 10),
        ("ungranted", 5),
        ("spelt", 5),
        ("other-host", 5),
    ];
    for (case, timeout) in cases {
        b.runbook(
            &format!("hostile-{case}"),
            &format!(
                "apiVersion: vigil/v1\nkind: Runbook\nname: hostile-{case}\nsteps:\n  - id: read\n    uses: lb-{case}/servers\n    timeout: {timeout}s\n    with: {{ backend: app }}\n"
            ),
        );
    }
    let r = contained(&b, "hostile-hang", 5);
    assert!(
        r.contains(&format!(
            "HAProxy at {}: `show servers state app`: no complete answer within 1500 ms",
            hang.addr
        )),
        "hang: {r}"
    );
    let r = contained(&b, "hostile-slow", 3);
    assert!(r.contains("timed out after 3s"), "slow: {r}");
    let r = contained(&b, "hostile-garbage", 5);
    assert!(
        r.contains("the answer is not HAProxy's runtime API")
            && r.contains("HTTP/1.1 400 Bad Request"),
        "garbage: {r}"
    );
    let r = contained(&b, "hostile-binary", 5);
    assert!(r.contains("the answer is not text"), "binary: {r}");
    let r = contained(&b, "hostile-big", 5);
    assert!(
        r.contains("larger than the 1048576 bytes this plugin reads (max_response_kib)"),
        "big: {r}"
    );
    let r = contained(&b, "hostile-flood", 10);
    assert!(
        r.contains("the host cut it at its io_kib limit"),
        "flood: {r}"
    );
    let r = contained(&b, "hostile-ungranted", 5);
    assert!(
        r.contains("not granted")
            && r.contains(&format!(
                "grants: {{ tcp: [{{ address: \"{}\" }}] }}",
                hang.addr
            )),
        "ungranted: {r}"
    );
    let r = contained(&b, "hostile-spelt", 5);
    assert!(
        r.contains(&format!("HAProxy at 0x7f.0.0.1:{}", port(&garbage)))
            && r.contains("not HAProxy's runtime API"),
        "the normalised address is granted and reached: {r}"
    );
    let r = contained(&b, "hostile-other-host", 5);
    assert!(
        r.contains(&format!("tcp localhost:{} is not granted", port(&garbage))),
        "other host: {r}"
    );
}
