//! `vigil demo` as a newcomer runs it: the built binary on the default bundle, the
//! real plugins, the demo's supervisor on 127.0.0.1:9798. The transcript must tell
//! its three stories — a memory leak remediated automatically, a database slowdown
//! cascading to its dependents and remediated after an approval, and a host failure
//! predicted by a model trained from the fleet's past and averted by a drain — in
//! order.

mod common;

use std::process::Command;

/// Asserts each needle appears in `text`, in this order; returns the offsets.
fn in_order(text: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        match text[from..].find(n) {
            Some(i) => from += i + n.len(),
            None => panic!("expected {n:?} after offset {from} in the transcript:\n{text}"),
        }
    }
}

#[test]
fn the_demo_tells_the_whole_story_and_ends_by_itself() {
    let _ = common::plugin_dir(); // the bundle loads them from target/plugins
    let store = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(common::workspace_root())
        .args(["demo", "--color", "never", "--timeout", "100s"])
        .env("VIGIL_STORE", store.path())
        .env_remove("VIGIL_CONFIG")
        .output()
        .expect("run vigil demo");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {err}\n{text}");

    // The leak: detected, one incident, the policy lets automation act, the restart
    // happens on the target, the check passes, the incident resolves.
    in_order(
        &text,
        &[
            "detect    MemoryLeak on checkout",
            "opened",
            "policy:escalation on restart-leaking-service: auto",
            "target    supervisor: restart of checkout (#1)",
            "verify: succeeded",
            "resolved: remediated by restart-leaking-service",
        ],
    );
    // The cascade: postgres first, its dependents folded into the same incident with
    // postgres as the root cause; the failover waits for a human, who approves.
    in_order(
        &text,
        &[
            "detect    LatencyHigh on postgres",
            "policy:escalation on database-latency: approve",
            "awaiting approval",
            "#sre-chat:",
            "target    supervisor: failover of postgres (#1)",
            "resolved: remediated by database-latency",
        ],
    );
    assert!(
        text.contains("LatencyHigh on payments") || text.contains("LatencyHigh on inventory"),
        "{text}"
    );
    // The failure model: trained before the story starts and serving; inventory's
    // precursors are seen coming, the host is drained before it fails, the drain is
    // verified, and the evaluation counts the failure as averted.
    in_order(
        &text,
        &[
            "learn     host-failure@1 trained on the fleet's past",
            "serving",
            "detect    HostFailurePredicted on inventory",
            "policy:escalation on drain-failing-host: auto",
            "target    supervisor: drain of inventory (#1)",
            "resolved: remediated by drain-failing-host",
            "== summary",
            "detector host-failure: predicted 1 of 1 failures (1 averted by remediation), 1 of 1 alarms true",
        ],
    );
    in_order(
        &text,
        &["== summary", "root cause postgres", "== where to look next"],
    );
    assert!(!text.contains("FAILED"), "{text}");
}
