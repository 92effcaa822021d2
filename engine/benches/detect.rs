//! Detector benchmarks: points scored per second (one method, the ensemble), bytes of state
//! per series, classifier training and prediction time.
//! Targets (`scripts/bench_report.py`): ≥ 5,000,000 points/s per core for one method, ≥ 1,000,000 for the
//! ensemble. `cargo bench --bench detect` prints the criterion figures; the throughput
//! lines are elements (points) per second.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use vigil_detect::anomaly::{METHOD_NAMES, ModelConfig};
use vigil_detect::classifier::{
    FEATURE_METRICS, FailureModel, FeatureExtractor, TrainConfig, synthetic_fleet,
};
use vigil_runtime::detectors::{DetectorRun, Series, ServedModel};

/// Points a method sees before `score/*` measures it.
const WARM_POINTS: usize = 100_000;

fn series(n: usize) -> Vec<(i64, f64)> {
    cycle(n, 20.0)
}

/// 5-minute points: a daily sine of this amplitude around 50, plus uniform noise (0–5).
fn cycle(n: usize, amplitude: f64) -> Vec<(i64, f64)> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 11) as f64 / (1u64 << 53) as f64;
            let phase = i as f64 * std::f64::consts::TAU / 288.0;
            (
                1_400_000_000 + 300 * i as i64,
                50.0 + amplitude * phase.sin() + 5.0 * noise,
            )
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    // Warmed on the first half, scored on the second: fresh points, each method past the
    // bulk of its learning (context learning does most of its in its first ~20,000
    // points, and still learns now and then after).
    let all = series(2 * WARM_POINTS);
    let (warm, pts) = all.split_at(WARM_POINTS);
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(pts.len() as u64));
    group.sample_size(20);
    for name in METHOD_NAMES {
        let cfg = match ModelConfig::by_name(name) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        // Warm the method first: steady state is what a long-running detector sees.
        let warmed = || {
            let mut m = cfg.build().expect("default config");
            for &(t, x) in warm {
                m.update(t, x);
            }
            m
        };
        group.bench_function(*name, |b| {
            b.iter_batched_ref(
                warmed,
                |m| {
                    let mut acc = 0.0;
                    for &(t, x) in pts {
                        acc += m.update(t, x).value;
                    }
                    black_box(acc)
                },
                BatchSize::LargeInput,
            )
        });
        let mut m = warmed();
        for &(t, x) in pts {
            m.update(t, x);
        }
        println!("state per series: {name} = {} bytes", m.state_bytes());
    }
    group.finish();
}

fn classifier(c: &mut Criterion) {
    let (history, failures) = synthetic_fleet(6000, 7, 12);
    let fx = FeatureExtractor::new(12).expect("valid");
    let (xs, ys) = fx.examples(&history, &failures, 6).expect("finite");
    let cfg = TrainConfig::default();
    let mut group = c.benchmark_group("classifier");
    group.sample_size(10);
    group.bench_function("train_6000_examples_25_trees", |b| {
        b.iter(|| black_box(FailureModel::train("bench", fx, 6, &xs, &ys, &cfg).expect("trains")))
    });
    let model = FailureModel::train("bench", fx, 6, &xs, &ys, &cfg).expect("trains");
    group.throughput(Throughput::Elements(1));
    group.bench_function("predict_one_window", |b| {
        b.iter(|| black_box(model.predict_samples(&history[..100]).expect("valid")))
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("predict_batch_1000", |b| {
        b.iter(|| black_box(model.predict_batch(&xs[..1000])))
    });
    // A scheduled run of a classifier detector as the daemon makes it: 100 hosts'
    // four feature series joined per host, each host's window extended by the run's
    // new samples (4: a 15 s schedule over 1-minute data… rounded up) and predicted.
    let text = "apiVersion: vigil/v1\nkind: Detector\nname: hf\nschedule: \"*/15 * * * * *\"\nsource: s\nfeatures: { cpu: c, memory: m, disk_io: d, error_rate: e }\nmodel: { classifier: { model: hf } }\nalert: { name: HostFailurePredicted }\n";
    let bundle = vigil_bundle::Bundle::from_source(std::path::Path::new("hf.yaml"), text);
    let served = ServedModel {
        id: "hf@1".into(),
        model,
    };
    const HOSTS: usize = 100;
    const NEW: usize = 4;
    let features = |from: usize| -> BTreeMap<String, Vec<Series>> {
        FEATURE_METRICS
            .iter()
            .enumerate()
            .map(|(f, name)| {
                let series = (0..HOSTS)
                    .map(|h| Series {
                        labels: BTreeMap::from([
                            ("__name__".to_string(), (*name).to_string()),
                            ("instance".to_string(), format!("host-{h}")),
                        ]),
                        points: (from..from + NEW)
                            .map(|i| {
                                let s = history[(i + h) % history.len()];
                                let v = [s.cpu, s.memory, s.disk_io, s.error_rate][f];
                                (i as i64 * 60, v)
                            })
                            .collect(),
                    })
                    .collect();
                ((*name).to_string(), series)
            })
            .collect()
    };
    group.throughput(Throughput::Elements((HOSTS * NEW) as u64));
    group.bench_function("detector_run_100_hosts_4_new_samples", |b| {
        b.iter_batched_ref(
            || {
                // Windows already full: a steady-state run.
                let mut run = DetectorRun::new(&bundle.detectors[0]);
                run.observe_features(&served, &features(0));
                run.observe_features(&served, &features(NEW));
                run.observe_features(&served, &features(2 * NEW));
                (run, features(3 * NEW))
            },
            |(run, batch)| black_box(run.observe_features(&served, batch)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// CPU seconds this thread has used (utime + stime from /proc, 100 Hz ticks), so the
/// per-core figures stay honest on a shared, loaded machine. `None` off Linux.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The bench series without its daily cycle: white noise around 50, on which the
/// ensemble's season gate stays open (every value member scores every point).
fn unseasonal(n: usize) -> Vec<(i64, f64)> {
    cycle(n, 0.0)
}

/// Points per CPU-second for each method over ≥ 2 CPU-seconds, printed next to the target;
/// also the ensemble without its context-learning member (`weights.context: 0`), the
/// lighter configuration for fleets of many series, on the bench series and on
/// [`unseasonal`] noise (`-no-season`: context learning's replays do not apply there, a
/// noise never settles, so only the lighter one is measured on it). `VIGIL_PER_CORE=ensemble` (a
/// comma-separated list of names) measures only those, e.g. under `perf record`.
fn per_core(_: &mut Criterion) {
    let only = std::env::var("VIGIL_PER_CORE").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    let (pts, noise) = (series(200_000), unseasonal(200_000));
    // As a detector's YAML would say it: the other weights keep their tuned defaults.
    let without_context: ModelConfig =
        serde_json::from_str(r#"{"method":"ensemble","weights":{"context":0}}"#)
            .expect("valid config");
    let configs = METHOD_NAMES
        .iter()
        .map(|name| (*name, ModelConfig::by_name(name).expect("a method")))
        .chain([
            ("ensemble-without-context", without_context.clone()),
            ("ensemble-without-context-no-season", without_context),
        ])
        .filter(|(name, _)| wanted(name));
    for (name, cfg) in configs {
        let pts = if name.ends_with("-no-season") {
            &noise
        } else {
            &pts
        };
        let target = if name.starts_with("ensemble") {
            1_000_000.0
        } else {
            5_000_000.0
        };
        let mut m = cfg.build().expect("default config");
        let (Some(start), mut scored) = (thread_cpu_secs(), 0usize) else {
            return;
        };
        let mut acc = 0.0;
        let mut used = 0.0;
        while used < 2.0 {
            for &(t, x) in pts {
                acc += m.update(t, x).value;
            }
            scored += pts.len();
            used = thread_cpu_secs().unwrap_or(start) - start;
        }
        black_box(acc);
        let rate = scored as f64 / used;
        println!(
            "per core: {name:<34} {:>12.0} points/CPU-s (target {:>9.0}: {}), state {} bytes/series",
            rate,
            target,
            if rate >= target { "met" } else { "NOT met" },
            m.state_bytes()
        );
    }
}

criterion_group!(benches, per_core, scoring, classifier);
criterion_main!(benches);
