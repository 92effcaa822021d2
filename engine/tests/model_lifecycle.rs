//! The failure model's lifecycle through the CLI: train two versions on generated
//! fleet data (known failure signature), list them, promote one, evaluate it on
//! unseen data against its baseline; bad input is refused with file:line:col.

use std::path::Path;
use std::process::{Command, Output};
use vigil_detect::classifier::synthetic_fleet;

fn write_csv(path: &Path, samples: usize, seed: u64) {
    let (history, failures) = synthetic_fleet(samples, seed, 12);
    let mut text = String::from("timestamp,cpu,memory,disk_io,error_rate,failure\n");
    for (i, (s, f)) in history.iter().zip(&failures).enumerate() {
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            i * 60,
            s.cpu,
            s.memory,
            s.disk_io,
            s.error_rate,
            u8::from(*f)
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn vigil(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--store")
        .arg(store)
        .args(["--color", "never"])
        .args(args)
        .output()
        .unwrap()
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
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn train_promote_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let train = dir.path().join("train.csv");
    let unseen = dir.path().join("unseen.csv");
    write_csv(&train, 6000, 7);
    write_csv(&unseen, 2000, 99);
    let t = train.to_str().unwrap();

    let first = json(
        &store,
        &["model", "train", "--name", "host-failure", "--input", t],
    );
    assert_eq!(first["model"], "host-failure@1");
    let ev = &first["evaluation"];
    assert!(
        ev["holdout_model"]["f1"].as_f64().unwrap()
            > ev["holdout_baseline"]["f1"].as_f64().unwrap(),
        "{ev}"
    );
    let second = json(
        &store,
        &[
            "model",
            "train",
            "--name",
            "host-failure",
            "--input",
            t,
            "--params",
            r#"{"trees": 15, "seed": 3}"#,
        ],
    );
    assert_eq!(second["model"], "host-failure@2");

    // Nothing serves until promoted.
    let o = vigil(
        &store,
        &[
            "model",
            "evaluate",
            "host-failure",
            "--input",
            unseen.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        vigil(&store, &["model", "promote", "host-failure@2"])
            .status
            .success()
    );
    let list = json(&store, &["model", "list"]);
    let serving: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["promoted"] == true)
        .collect();
    assert_eq!(serving.len(), 1);
    assert_eq!(serving[0]["version"], 2);

    let eval = json(
        &store,
        &[
            "model",
            "evaluate",
            "host-failure",
            "--input",
            unseen.to_str().unwrap(),
        ],
    );
    let (m, b) = (&eval["model_quality"], &eval["baseline_quality"]);
    assert!(
        m["f1"].as_f64().unwrap() > b["f1"].as_f64().unwrap(),
        "model {m} vs baseline {b}"
    );
    assert!(
        m["precision"].as_f64().unwrap() >= 0.8,
        "raised predictions must be mostly right: {m}"
    );
}

#[test]
fn bad_training_files_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,cpu,memory,disk_io,error_rate,failure\n0,1,2,3,0.1,0\n60,1,NaN,3,0.1,0\n",
    )
    .unwrap();
    let o = vigil(
        &store,
        &[
            "model",
            "train",
            "--name",
            "x",
            "--input",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.csv:3:3") && err.contains("NaN"), "{err}");
}
