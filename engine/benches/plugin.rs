//! Plugin host benchmarks, each printed next to its target:
//! - no-op export call on a live instance (≤ 2 µs)
//! - instantiation from `InstancePre`, fresh store included (≤ 30 µs) — what every call pays
//! - a full engine call (fresh store + instantiate + call), for reference
//! - cold process start to first plugin call with a warm `.cwasm` cache (≤ 300 ms) vs without

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_plugin_host::{HostOptions, InstanceConfig, PluginHost, PluginInstance};

fn report(name: &str, per_iter: Duration, target: Duration) {
    let ok = if per_iter <= target { "ok" } else { "MISSED" };
    println!("FIGURE {name}: {per_iter:.2?} (target ≤ {target:?}) {ok}");
}

/// Mean of `n` runs of `f` after a warm-up, for the printed figure.
fn mean(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..(n / 10).max(1) {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

fn calls(c: &mut Criterion) {
    let host = PluginHost::new(HostOptions::default()).expect("host");
    let noop = host
        .load_file(&common::plugin_path("noop"))
        .expect("load noop");

    let mut warm = noop.warm_instance().expect("warm instance");
    c.bench_function("plugin/call_noop_export", |b| {
        b.iter(|| warm.call_validate("noop", "null").expect("call"))
    });
    report(
        "plugin call overhead (no-op export)",
        mean(20_000, || warm.call_validate("noop", "null").expect("call")),
        Duration::from_micros(2),
    );

    c.bench_function("plugin/instantiate_from_instance_pre", |b| {
        b.iter(|| noop.instantiate_only().expect("instantiate"))
    });
    report(
        "instantiate from InstancePre",
        mean(5_000, || noop.instantiate_only().expect("instantiate")),
        Duration::from_micros(30),
    );

    let inst = PluginInstance::new(noop.clone(), InstanceConfig::bare("noop")).expect("instance");
    let input = serde_json::Value::Null;
    c.bench_function("plugin/full_call_fresh_store", |b| {
        b.iter(|| inst.validate("noop", &input).expect("validate"))
    });
    println!(
        "FIGURE full engine call (fresh store + instantiate + call): {:.2?}",
        mean(5_000, || inst.validate("noop", &input).expect("validate"))
    );
}

fn cold_start(c: &mut Criterion) {
    let exe = env!("CARGO_BIN_EXE_vigil");
    let wasm = common::plugin_path("prometheus");
    let cache = tempfile::tempdir().expect("cache dir");
    let run = |cache_dir: Option<&std::path::Path>| {
        let mut cmd = Command::new(exe);
        cmd.args(["--output", "json", "plugin", "inspect"])
            .arg(&wasm);
        if let Some(d) = cache_dir {
            cmd.arg("--cache-dir").arg(d);
        }
        let out = cmd.output().expect("run vigil");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let first = run(Some(cache.path()));
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"cache\":\"miss\""));
    let warm = run(Some(cache.path()));
    assert!(String::from_utf8_lossy(&warm.stdout).contains("\"cache\":\"hit\""));

    let mut g = c.benchmark_group("plugin/cold_start_to_first_call");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("warm_cwasm_cache", |b| b.iter(|| run(Some(cache.path()))));
    g.bench_function("no_cache", |b| b.iter(|| run(None)));
    g.finish();
    report(
        "cold start to first call, warm .cwasm cache",
        mean(10, || drop(run(Some(cache.path())))),
        Duration::from_millis(300),
    );
    println!(
        "FIGURE cold start to first call, no cache (compile): {:.2?}",
        mean(3, || drop(run(None)))
    );
}

criterion_group!(benches, calls, cold_start);
criterion_main!(benches);
