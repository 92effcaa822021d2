//! Retraining a failure model from what happened, through the binary on the default
//! bundle: `vigil model retrain` learns `host-failure` from the `sim` fleet's labelled
//! history and serves it; `vigil evaluate --retrain` trains the next version and
//! promotes it only if it is no worse on the same hold-out.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn vigil(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(common::workspace_root())
        .env_remove("VIGIL_CONFIG")
        .arg("--store")
        .arg(store)
        .args(["--color", "never"])
        .args(args)
        .output()
        .expect("run vigil")
}

fn json(store: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let o = vigil(store, &all);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn a_failure_model_is_retrained_from_what_happened_and_served_only_if_no_worse() {
    let _ = common::plugin_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");

    let first = json(&store, &["model", "retrain", "host-failure"]);
    assert_eq!(first["model"], "host-failure@1");
    assert_eq!(first["promoted"], true, "{first}");
    assert_eq!(first["hosts"], 5, "the fleet's five services");
    assert!(first["failures"].as_u64().expect("count") >= 10, "{first}");
    let (model, baseline) = (
        first["candidate"]["f1"].as_f64().expect("f1"),
        first["baseline"]["f1"].as_f64().expect("f1"),
    );
    assert!(model > baseline, "the trees beat one threshold: {first}");
    assert!(
        first["candidate"]["precision"].as_f64().expect("p") >= 0.8,
        "{first}"
    );

    // The feedback loop: evaluate, then retrain from the same record.
    let second = json(&store, &["evaluate", "--retrain"]);
    let r = &second["retrained"][0];
    assert_eq!(r["model"], "host-failure@2", "{second}");
    assert_eq!(
        r["serving"][0], "host-failure@1",
        "compared with what served"
    );
    let (new, old) = (
        r["candidate"]["f1"].as_f64().expect("f1"),
        r["serving"][1]["f1"].as_f64().expect("f1"),
    );
    assert_eq!(r["promoted"], new >= old, "{r}");

    let listed = json(&store, &["model", "list"]);
    let serving: Vec<&serde_json::Value> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter(|m| m["promoted"] == true)
        .collect();
    assert_eq!(serving.len(), 1, "one version serves: {listed}");

    // A model no detector serves is refused with what to write.
    let o = vigil(&store, &["model", "retrain", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no detector in the bundle serves model `nope`"),
        "{err}"
    );
}
