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

    // Every command the demo ends with works as printed, now the demo is over and no
    // server is running, and shows what it says it shows.
    let hints = next_steps(&text);
    assert!(hints.len() >= 6, "{hints:#?}");
    let demo_store = store.path().join("demo").display().to_string();
    for hint in &hints {
        run_hint(hint, &demo_store);
    }
}

/// The commands after "== where to look next", without their comments.
fn next_steps(transcript: &str) -> Vec<String> {
    let (_, tail) = transcript
        .split_once("== where to look next")
        .expect("the closing hints");
    tail.lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split(" # ").next().unwrap_or_default().trim().to_string())
        .collect()
}

/// Runs one hint as a shell would (`NAME=value` words first are its environment), from
/// where the demo ran, in a shell where no VIGIL_* variable is set; checks it exits 0
/// and shows what it promises.
fn run_hint(hint: &str, store: &str) {
    assert!(
        !hint.contains(['\'', '"', '\\', '$', '`', ';', '|', '&']),
        "a hint a shell would read differently from its words: {hint}"
    );
    let mut words = hint.split_whitespace().peekable();
    let mut env = Vec::new();
    while let Some((k, v)) = words.peek().and_then(|w| w.split_once('=')) {
        env.push((k.to_string(), v.to_string()));
        words.next();
    }
    let program = words.next().expect("a command");
    assert_eq!(
        program,
        env!("CARGO_BIN_EXE_vigil"),
        "the hint calls vigil as the demo was called: {hint}"
    );
    let args: Vec<&str> = words.collect();
    assert!(
        hint.contains(&format!("--store {store}")),
        "the hint reads the demo's store: {hint}"
    );
    let mut cmd = Command::new(program);
    cmd.current_dir(common::workspace_root()).args(&args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VIGIL_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env);
    let sub = args
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if sub == "serve" {
        return run_server_hint(cmd, hint, store);
    }
    let out = cmd.output().expect("run the hint");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`{hint}` failed: {stderr}\n{stdout}");
    let expected: &[&str] = match sub.as_str() {
        "incidents list" => &[
            "MemoryLeak on checkout",
            "LatencyHigh on postgres",
            "HostFailurePredicted on inventory",
            "resolved",
        ],
        "executions list" => &[
            "restart-leaking-service",
            "database-latency",
            "drain-failing-host",
            "succeeded",
        ],
        "audit" => &["policy:escalation", "decide", " approve ", "user:"],
        "model list" => &["host-failure@1", "serving"],
        "model retrain host-failure" => &["trained host-failure@2", "hold-out"],
        other => panic!("no check for the hint `{hint}` (`{other}`): add one"),
    };
    for e in expected {
        assert!(
            stdout.contains(e),
            "`{hint}` does not show {e:?}:\n{stdout}"
        );
    }
}

/// A server hint: it starts, says where it listens and on which store, and stops
/// cleanly (exit 0) on SIGTERM.
fn run_server_hint(mut cmd: Command, hint: &str, store: &str) {
    use std::io::BufRead;
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the server hint");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    if line.is_empty() {
        let status = child.0.wait().expect("wait");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.0.stderr.take().expect("stderr"), &mut err)
            .expect("stderr");
        panic!("`{hint}` stopped ({status}) before listening: {err}");
    }
    assert!(
        line.contains("listening on http://") && line.contains(store),
        "`{hint}`: {line}"
    );
    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = child.0.wait().expect("wait for the server");
    assert!(status.success(), "`{hint}` on SIGTERM: {status}");
}
