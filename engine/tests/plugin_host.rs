//! The real plugins through the host: sim, file, exec; grants and denials;
//! the compile cache (hit, miss, corrupt entry rebuilt); describe().

mod common;

use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use vigil_core::action::{ActionCatalog, ActionPlan, Risk};
use vigil_plugin_host::{
    CacheOutcome, CapabilityKind, HostOptions, InstanceConfig, PluginCatalog, PluginError,
    PluginHost, PluginInstance, StaticSecrets, TimeRange,
};

fn host() -> PluginHost {
    PluginHost::new(HostOptions::default()).expect("host")
}

fn instance(host: &PluginHost, stem: &str, cfg: serde_json::Value) -> PluginInstance {
    let plugin = host.load_file(&common::plugin_path(stem)).expect("load");
    let cfg: InstanceConfig = serde_json::from_value(cfg).expect("instance config");
    PluginInstance::new(plugin, cfg).expect("instance")
}

#[test]
fn describe_reports_kinds_actions_and_capabilities() {
    let h = host();
    let cat = PluginCatalog::load(&h, &[common::plugin_dir().to_path_buf()], &[]).expect("catalog");
    let prom = cat.plugin("prometheus").expect("prometheus").info();
    assert!(prom.kinds.connector && prom.kinds.action);
    assert_eq!(prom.sdk_version, env!("CARGO_PKG_VERSION"));
    assert!(prom.requests(CapabilityKind::Http));
    assert_eq!(prom.config_schema["required"], json!(["url"]));
    let exec = cat.plugin("exec").expect("exec").info();
    assert!(!exec.kinds.connector && exec.kinds.action);
    assert!(
        !exec.actions[0].idempotent,
        "exec declares itself non-idempotent"
    );
    let exec_action = cat.resolve("exec/command").expect("exec/command");
    assert!(!exec_action.info().idempotent);
    assert!(
        cat.resolve("prometheus/query")
            .expect("query")
            .info()
            .idempotent
    );
    assert!(cat.resolve("nope/query").is_none());
    assert!(cat.resolve("exec/nope").is_none());
    let names = cat.names();
    for n in [
        "prometheus/query",
        "http/slack",
        "http/pagerduty",
        "http/request",
        "http/webhook",
        "exec/command",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    assert!(
        cat.connector("sim").is_some()
            && cat.connector("file").is_some()
            && cat.connector("exec").is_none()
    );
}

#[test]
fn sim_is_deterministic_and_labels_anomalies() {
    let h = host();
    let sim = instance(
        &h,
        "sim",
        json!({ "name": "sim", "config": { "seed": 3, "anchor_ms": 0 } }),
    );
    let range = TimeRange::range(0, 24 * 3_600_000, 300_000);
    let a = sim.fetch("memory-leak", range).expect("fetch");
    let b = sim.fetch("memory-leak", range).expect("fetch again");
    assert_eq!(a, b, "same seed, same data");
    assert_eq!(a.series[0].samples.len(), 289);
    assert_eq!(
        a.series[0].labels["__name__"],
        "process_resident_memory_bytes"
    );
    let leak = a
        .events
        .iter()
        .find(|e| e.labels.get("anomaly").map(String::as_str) == Some("leak"))
        .expect("leak labelled");
    assert_eq!(leak.timestamp, 6 * 3_600_000);
    let other = instance(
        &h,
        "sim",
        json!({ "name": "sim", "config": { "seed": 4, "anchor_ms": 0 } }),
    );
    assert_ne!(other.fetch("memory-leak", range).expect("fetch"), a);
    let all = sim.fetch("all", range).expect("all presets");
    assert_eq!(all.series.len(), 5);
    let err = sim.fetch("nope", range).expect_err("unknown scenario");
    assert!(
        matches!(err, PluginError::Reported { .. }) && err.to_string().contains("presets"),
        "{err}"
    );
    let err = instance(&h, "sim", json!({ "name": "sim", "config": { "sed": 1 } }))
        .fetch("cpu", range)
        .expect_err("bad config");
    assert!(err.to_string().contains("unknown field `sed`"), "{err}");
}

#[test]
fn file_reads_only_granted_directories() {
    let h = host();
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("nab.csv");
    std::fs::write(
        &csv,
        "timestamp,value\n2014-04-01 00:00:00,10\n2014-04-01 00:05:00,12.5\n",
    )
    .expect("write");
    let jsonl = dir.path().join("m.jsonl");
    std::fs::write(
        &jsonl,
        "{\"ts\": 1, \"value\": 2, \"host\": \"a\"}\n{\"ts\": 2, \"message\": \"deploy\"}\n",
    )
    .expect("write");
    let all = TimeRange::range(0, i64::MAX, 0);

    let granted = instance(
        &h,
        "file",
        json!({ "name": "file", "grants": { "files": [{ "path": dir.path() }] } }),
    );
    let b = granted
        .fetch(csv.to_str().expect("utf8"), all)
        .expect("csv");
    assert_eq!(b.series[0].samples.len(), 2);
    assert_eq!(b.series[0].samples[1].value, 12.5);
    assert_eq!(b.series[0].samples[0].timestamp, 1_396_310_400_000);
    let j = granted
        .fetch(jsonl.to_str().expect("utf8"), all)
        .expect("jsonl");
    assert_eq!(j.series[0].labels["host"], "a");
    assert_eq!(j.events[0].message, "deploy");

    let err = granted
        .fetch("/etc/passwd", all)
        .expect_err("outside the grant");
    assert!(
        err.to_string().contains("cannot read \"/etc/passwd\""),
        "{err}"
    );
    let bare = instance(&h, "file", json!({ "name": "file" }));
    let err = bare
        .fetch(csv.to_str().expect("utf8"), all)
        .expect_err("no grant");
    assert!(err.to_string().contains("grants: { files"), "{err}");
    // A relative or escaping grant is refused at configuration time.
    let plugin = h.load_file(&common::plugin_path("file")).expect("load");
    let cfg: InstanceConfig = serde_json::from_value(
        json!({ "name": "f", "grants": { "files": [{ "path": "/tmp/../etc" }] } }),
    )
    .expect("cfg");
    assert!(PluginInstance::new(plugin, cfg).is_err());
}

#[test]
fn exec_runs_only_granted_commands_and_only_in_execute() {
    let h = host();
    let exec = instance(
        &h,
        "exec",
        json!({ "name": "exec", "grants": { "process": [{ "command": "echo", "args": ["hello", "re:[a-z]+"] }, { "command": "false" }] } }),
    );
    let input = json!({ "command": "echo", "args": ["hello", "world"] });
    let plan = exec.plan("command", &input).expect("plan");
    assert_eq!(plan.summary, "run `echo hello world`");
    assert_eq!(plan.risk(), Risk::High);
    assert_eq!(plan.steps[0].effects, vec!["process:echo"]);
    let out = exec.execute("command", &input, &plan).expect("execute");
    assert_eq!(out["stdout"], "hello world\n");
    assert_eq!(out["status"], 0);

    // Argument outside the pattern: denied, quoting the grant that would allow it.
    let bad = json!({ "command": "echo", "args": ["hello", "World;rm"] });
    let err = exec
        .execute("command", &bad, &exec.plan("command", &bad).expect("plan"))
        .expect_err("denied");
    assert!(matches!(err, PluginError::Denied { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(r#"grants: { process: [{ command: echo, args: ["hello", "World;rm"] }] }"#),
        "{err}"
    );

    // Executing with a plan that does not declare the process effect: denied.
    let err = exec
        .execute("command", &input, &ActionPlan::default())
        .expect_err("undeclared");
    assert!(
        err.to_string().contains("not declared by the plan"),
        "{err}"
    );

    // Non-zero exit is a failure (retryable), not a sandbox error.
    let f = json!({ "command": "false" });
    let err = exec
        .execute("command", &f, &exec.plan("command", &f).expect("plan"))
        .expect_err("exit 1");
    assert!(err.to_string().contains("exited with status 1"), "{err}");
    assert!(err.into_action_error().is_retryable());
    assert!(
        exec.validate("command", &json!({ "command": "rm -rf /" }))
            .is_err()
    );
}

#[test]
fn secrets_only_when_named_in_grants() {
    let mut s = HashMap::new();
    s.insert("pd-key".to_string(), "SECRET-KEY".to_string());
    s.insert("other".to_string(), "NOPE".to_string());
    let h = PluginHost::new(HostOptions {
        secrets: Some(Arc::new(StaticSecrets(s))),
        ..HostOptions::default()
    })
    .expect("host");
    let http = instance(
        &h,
        "http",
        json!({ "name": "http", "grants": { "secrets": ["pd-key"] } }),
    );
    let input = json!({ "routing_key_secret": "pd-key", "summary": "s", "source": "x", "url": "http://127.0.0.1:9/pd" });
    let plan = http
        .plan("pagerduty", &input)
        .expect("plan reads the granted secret");
    assert_eq!(
        plan.steps[0].effects,
        vec!["http:POST http://127.0.0.1:9/pd"]
    );
    let input = json!({ "routing_key_secret": "other", "summary": "s", "source": "x" });
    let err = http
        .plan("pagerduty", &input)
        .expect_err("ungranted secret");
    assert!(
        err.to_string().contains("grants: { secrets: [other] }"),
        "{err}"
    );
}

#[test]
fn compile_cache_hits_and_rebuilds_corrupt_entries() {
    let dir = tempfile::tempdir().expect("tmp");
    let opts = || HostOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostOptions::default()
    };
    let path = common::plugin_path("noop");
    let first = PluginHost::new(opts())
        .expect("host")
        .load_file(&path)
        .expect("load");
    assert_eq!(first.cache_outcome(), &CacheOutcome::Miss);
    let second = PluginHost::new(opts())
        .expect("host")
        .load_file(&path)
        .expect("load");
    assert_eq!(second.cache_outcome(), &CacheOutcome::Hit);
    second.describe().expect("works from cache");

    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert!(entry.extension().is_some_and(|e| e == "cwasm"));
    // Flip a byte in the compiled code: the checksum catches it.
    let mut bytes = std::fs::read(entry).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(entry, &bytes).expect("write");
    let third = PluginHost::new(opts())
        .expect("host")
        .load_file(&path)
        .expect("load");
    assert!(
        matches!(third.cache_outcome(), CacheOutcome::Rebuilt { reason } if reason.contains("checksum")),
        "{:?}",
        third.cache_outcome()
    );
    third.describe().expect("rebuilt works");
    // Truncated entry.
    std::fs::write(entry, b"VIGILCW2short").expect("write");
    let fourth = PluginHost::new(opts())
        .expect("host")
        .load_file(&path)
        .expect("load");
    assert!(matches!(
        fourth.cache_outcome(),
        CacheOutcome::Rebuilt { .. }
    ));
    assert_eq!(
        PluginHost::new(opts())
            .expect("host")
            .load_file(&path)
            .expect("load")
            .cache_outcome(),
        &CacheOutcome::Hit
    );
}

#[test]
fn a_cache_entry_copied_under_another_plugin_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("cache");
    let opts = || HostOptions {
        cache_dir: Some(cache.clone()),
        ..HostOptions::default()
    };
    let noop_wasm = std::fs::read(common::plugin_path("noop")).expect("noop");
    let hostile_wasm = std::fs::read(common::plugin_path("hostile")).expect("hostile");
    let host = PluginHost::new(opts()).expect("host");
    host.load_file(&common::plugin_path("noop")).expect("noop");
    host.load_file(&common::plugin_path("hostile"))
        .expect("hostile");
    let entry_of = |wasm: &[u8]| {
        let stem = &vigil_plugin_host::content_hash(wasm)[..32];
        std::fs::read_dir(&cache)
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(stem))
            })
            .expect("an entry")
    };
    // Whoever can write the cache puts noop's native code under hostile's name.
    std::fs::copy(entry_of(&noop_wasm), entry_of(&hostile_wasm)).expect("copy");
    let loaded = PluginHost::new(opts())
        .expect("host")
        .load_file(&common::plugin_path("hostile"))
        .expect("load");
    assert!(
        matches!(loaded.cache_outcome(), CacheOutcome::Rebuilt { reason } if reason.contains("other bytes")),
        "{:?}",
        loaded.cache_outcome()
    );
    assert_eq!(loaded.info().name, "hostile");
    // A cache directory others may write is not used at all.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let loaded = PluginHost::new(opts())
        .expect("host")
        .load_file(&common::plugin_path("noop"))
        .expect("load");
    assert!(
        matches!(loaded.cache_outcome(), CacheOutcome::Untrusted { reason } if reason.contains("writable by others")),
        "{:?}",
        loaded.cache_outcome()
    );
    loaded.describe().expect("compiled in memory, works");
}

#[test]
fn not_a_component_is_a_load_error() {
    let h = host();
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0garbage").expect("write");
    let err = h.load_file(&bad).expect_err("not a component");
    assert!(
        matches!(err, PluginError::Load { .. }) && err.to_string().contains("bad.wasm"),
        "{err}"
    );
    // A file far larger than any component is refused before it is read.
    let huge = dir.path().join("huge.wasm.big");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(129 << 20))
        .expect("sparse file");
    let err = h.load_file(&huge).expect_err("too large");
    assert!(err.to_string().contains("larger than 128 MiB"), "{err}");
    let err = PluginCatalog::load(&h, &[dir.path().to_path_buf()], &[])
        .expect_err("dir with a bad plugin");
    assert!(err.to_string().contains("bad.wasm"), "{err}");
    // Unknown plugin in an instance config.
    let cfg: InstanceConfig =
        serde_json::from_value(json!({ "name": "x", "plugin": "nope" })).expect("cfg");
    let err = PluginCatalog::load(&h, &[common::plugin_dir().to_path_buf()], &[cfg])
        .expect_err("unknown plugin");
    assert!(
        err.to_string().contains("no plugin named \"nope\""),
        "{err}"
    );
    // Instance names become `<name>/<action>`: no slashes.
    let cfg: InstanceConfig =
        serde_json::from_value(json!({ "name": "a/b", "plugin": "sim" })).expect("cfg");
    let err = PluginCatalog::load(&h, &[common::plugin_dir().to_path_buf()], &[cfg])
        .expect_err("bad name");
    assert!(err.to_string().contains("source name \"a/b\""), "{err}");
    // Unknown keys in an instance config are rejected.
    assert!(serde_json::from_value::<InstanceConfig>(json!({ "name": "x", "grant": {} })).is_err());
    assert!(
        serde_json::from_value::<InstanceConfig>(json!({ "name": "x", "limits": { "memory": 1 } }))
            .is_err()
    );
}

/// The connector side as the detector scheduler uses it: the bundled
/// `memory-leak` detector (source: sim) scores what the sim connector returns,
/// run after run, and alerts after the injected change.
#[test]
fn sim_feeds_the_bundled_memory_leak_detector() {
    use vigil_runtime::detectors::{DetectorRun, Series};
    let bundle = vigil_bundle::Bundle::load(&common::workspace_root().join("runbooks"))
        .expect("default bundle");
    let det = bundle
        .detectors
        .iter()
        .find(|d| d.name == "memory-leak")
        .expect("memory-leak detector");
    assert_eq!(det.source, "sim");
    let h = host();
    let mut cat = PluginCatalog::new(h.clone());
    cat.add_plugin(h.load_file(&common::plugin_path("sim")).expect("load sim"))
        .expect("add");
    cat.add_instance(serde_json::from_value(json!({ "name": "sim", "config": { "seed": 1, "anchor_ms": 0, "interval_ms": 60_000 } })).expect("cfg"))
        .expect("instance");
    let sim = cat.connector(&det.source).expect("sim connector");
    let mut run = DetectorRun::new(det);
    let hour = 3_600_000;
    let mut first_alert = None;
    // One scheduled run per 15 minutes of simulated time, over 12 hours.
    // The detector's metric, with a sudden +300 MB step at 8 h (the preset's slow
    // leak is a matter of detector tuning, not of this plumbing).
    let query = json!({
        "name": "process_resident_memory_bytes", "labels": { "service": "api" }, "base": 5e8, "noise": 5e6,
        "level_shifts": [{ "at": 8 * 3_600_000, "delta": 3e8 }]
    })
    .to_string();
    let mut scores = Vec::new();
    for i in 1..=96i64 {
        let end = i * hour / 4;
        let batch = sim
            .fetch(&query, TimeRange::range(end - hour / 4 + 1, end, 0))
            .expect("fetch");
        let series: Vec<Series> = batch
            .series
            .iter()
            .map(|s| Series {
                labels: s.labels.clone(),
                points: s
                    .samples
                    .iter()
                    .map(|p| (p.timestamp / 1000, p.value))
                    .collect(),
            })
            .collect();
        let found = run.observe(&series);
        scores.push(found.len());
        if first_alert.is_none() && !found.is_empty() {
            first_alert = Some((end, found[0].clone()));
        }
    }
    let (at, alert) = first_alert.unwrap_or_else(|| panic!("the change is detected: {scores:?}"));
    assert!(
        at >= 8 * hour,
        "no alert before the change (first at {} h)",
        at as f64 / hour as f64
    );
    assert_eq!(alert.alertname, "MemoryLeak");
    assert!(
        at <= 9 * hour,
        "alerted within the hour after the step (at {} h)",
        at as f64 / hour as f64
    );
    assert_eq!(alert.labels.get("service").map(String::as_str), Some("api"));
    assert_eq!(
        alert.labels.get("__name__").map(String::as_str),
        Some("process_resident_memory_bytes")
    );
}
