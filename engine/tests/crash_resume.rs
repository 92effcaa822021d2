//! End-to-end: kill `vigil run` with SIGKILL in the middle of a runbook, run it
//! again, and check from the journal and from side effects outside the process
//! that completed steps ran exactly once.

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn vigil(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.arg("--store").arg(store).args(["--color", "never"]);
    c
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

fn executions(store: &Path) -> Vec<Value> {
    let out = vigil(store)
        .args(["executions", "list", "--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn journal(store: &Path, id: &str) -> Vec<Value> {
    let out = vigil(store)
        .args(["executions", "show", id, "--output", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["events"].as_array().unwrap().clone()
}

#[test]
fn sigkill_mid_run_then_resume_runs_every_completed_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects.log");
    let store = dir.path().join("store");
    let mut steps = String::new();
    let mut prev: Option<String> = None;
    for i in 1..=6 {
        let needs = prev
            .as_ref()
            .map(|p| format!("    needs: [{p}]\n"))
            .unwrap_or_default();
        steps.push_str(&format!(
            "  - id: effect{i}\n    uses: core/write\n{needs}    with: {{ path: \"{}\", content: \"effect{i}\\n\", append: true }}\n  - id: pause{i}\n    uses: core/sleep\n    needs: [effect{i}]\n    with: {{ duration: 1s }}\n",
            effects.display()
        ));
        prev = Some(format!("pause{i}"));
    }
    let rb = dir.path().join("chain.yaml");
    std::fs::write(
        &rb,
        format!("apiVersion: vigil/v1\nkind: Runbook\nname: chain\nsteps:\n{steps}"),
    )
    .unwrap();

    let child = vigil(&store)
        .arg("run")
        .arg(&rb)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = || {
        std::fs::read_to_string(&effects)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    wait_for("three effects", Duration::from_secs(30), || lines() >= 3);
    // Kill during the pause after the third effect (the effect itself takes milliseconds).
    std::thread::sleep(Duration::from_millis(400));
    kill(child);
    let before = lines();
    assert!(before < 6, "the run finished before it could be killed");

    let out = vigil(&store).arg("run").arg(&rb).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resuming it"), "{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Side effects counted outside the process: each effect exactly once, in order.
    let text = std::fs::read_to_string(&effects).unwrap();
    let expected: Vec<String> = (1..=6).map(|i| format!("effect{i}")).collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);

    // The journal: one execution, succeeded, each effect step succeeded once.
    let list = executions(&store);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "succeeded");
    let events = journal(&store, list[0]["id"].as_str().unwrap());
    for i in 1..=6 {
        let succeeded = events
            .iter()
            .filter(|e| e["step"] == format!("effect{i}") && e["kind"] == "succeeded")
            .count();
        assert_eq!(succeeded, 1, "effect{i} succeeded {succeeded} times");
    }
    assert!(events.iter().any(|e| e["kind"] == "execution_resumed"));
}

#[test]
fn sigkill_during_a_non_idempotent_step_stops_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    // Opening a FIFO for writing blocks until a reader appears: the step hangs mid-effect.
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let store = dir.path().join("store");
    let rb = dir.path().join("doubt.yaml");
    std::fs::write(
        &rb,
        format!(
            "apiVersion: vigil/v1\nkind: Runbook\nname: doubt\nsteps:\n  - id: prepare\n    uses: core/set\n    with: {{ ok: true }}\n  - id: charge\n    uses: core/write\n    needs: [prepare]\n    with: {{ path: \"{}\", content: \"charge card\\n\", append: true }}\n  - id: after\n    uses: core/log\n    needs: [charge]\n",
            fifo.display()
        ),
    )
    .unwrap();
    let child = vigil(&store)
        .arg("run")
        .arg(&rb)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the journal shows `charge` started (durably, before the effect).
    let started = || {
        let list = executions(&store);
        list.first().is_some_and(|e| {
            journal(&store, e["id"].as_str().unwrap())
                .iter()
                .any(|ev| ev["step"] == "charge" && ev["kind"] == "started")
        })
    };
    // The running process holds the store's lock, so wait, kill, then read the journal.
    std::thread::sleep(Duration::from_millis(1500));
    kill(child);
    assert!(
        started(),
        "the journal should show `charge` started before the kill"
    );

    let out = vigil(&store).arg("run").arg(&rb).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("IN DOUBT"), "{stdout}");
    let list = executions(&store);
    assert_eq!(list[0]["status"], "in_doubt");
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not idempotent")
    );
    let events = journal(&store, list[0]["id"].as_str().unwrap());
    assert!(
        !events
            .iter()
            .any(|e| e["step"] == "after" && e["kind"] == "started"),
        "nothing after an in-doubt step runs"
    );
}
