//! `vigil plugin new|build|inspect|list`: the scaffold builds with one command and
//! the result loads and runs in the host.

mod common;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use vigil_plugin_host::{HostOptions, InstanceConfig, PluginHost, PluginInstance, TimeRange};

fn vigil(args: &[&str], target_dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("run vigil");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn scaffolded_plugins_build_and_run() {
    // Share compiled dependencies with the test plugins.
    let target = common::plugin_dir()
        .parent()
        .expect("plugin dir parent")
        .to_path_buf();
    assert!(target.join("wasm32-wasip2").exists() || std::env::var("VIGIL_PLUGIN_DIR").is_ok());
    let tmp = tempfile::tempdir().expect("tmp");
    let parent = tmp.path().to_str().expect("utf8");
    let out_dir = tmp.path().join("out");
    let out_str = out_dir.to_str().expect("utf8");

    let (ok, stdout, stderr) = vigil(
        &[
            "plugin",
            "new",
            "my-notifier",
            "--kind",
            "action",
            "--dir",
            parent,
        ],
        &target,
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cargo build --release"), "{stdout}");
    let (ok, _, stderr) = vigil(
        &[
            "plugin",
            "new",
            "my-source",
            "--kind",
            "connector",
            "--dir",
            parent,
        ],
        &target,
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = vigil(&["plugin", "new", "my-source", "--dir", parent], &target);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let (ok, _, stderr) = vigil(&["plugin", "new", "Bad Name", "--dir", parent], &target);
    assert!(!ok && stderr.contains("lower-case"), "{stderr}");

    for name in ["my-notifier", "my-source"] {
        let dir = tmp.path().join(name);
        let (ok, stdout, stderr) = vigil(
            &[
                "plugin",
                "build",
                dir.to_str().expect("utf8"),
                "--out",
                out_str,
            ],
            &target,
        );
        assert!(ok, "build {name}: {stderr}");
        assert!(stdout.contains(&format!("({name} 0.1.0)")), "{stdout}");
    }

    let (ok, stdout, stderr) = vigil(
        &["--output", "json", "plugin", "list", "--dir", out_str],
        &target,
    );
    assert!(ok, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("json list");
    assert_eq!(list.as_array().map(Vec::len), Some(2));

    let wasm = out_dir.join("my_notifier.wasm");
    let (ok, stdout, stderr) = vigil(
        &[
            "--output",
            "json",
            "plugin",
            "inspect",
            wasm.to_str().expect("utf8"),
        ],
        &target,
    );
    assert!(ok, "{stderr}");
    let info: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(info["info"]["actions"][0]["name"], "notify");
    assert_eq!(info["info"]["capabilities"][0]["kind"], "http");

    // The scaffolds run in the host.
    let host = PluginHost::new(HostOptions::default()).expect("host");
    let source = host
        .load_file(&out_dir.join("my_source.wasm"))
        .expect("load source");
    let source = PluginInstance::new(
        source,
        serde_json::from_value::<InstanceConfig>(
            json!({ "name": "s", "config": { "value": 2.5 } }),
        )
        .expect("cfg"),
    )
    .expect("instance");
    let b = source
        .fetch("answer", TimeRange::range(0, 180_000, 60_000))
        .expect("fetch");
    assert_eq!(b.series[0].samples.len(), 4);
    assert_eq!(b.series[0].samples[3].value, 2.5);
    let notifier = host.load_file(&wasm).expect("load notifier");
    let notifier = PluginInstance::new(
        notifier,
        serde_json::from_value::<InstanceConfig>(
            json!({ "name": "n", "config": { "url": "http://127.0.0.1:9/x" } }),
        )
        .expect("cfg"),
    )
    .expect("instance");
    let plan = notifier
        .plan("notify", &json!({ "text": "hi" }))
        .expect("plan");
    assert_eq!(
        plan.steps[0].effects,
        vec!["http:POST http://127.0.0.1:9/x"]
    );
    assert!(notifier.validate("notify", &json!({})).is_err());
}
