//! Detector benchmarks: points scored per second (one method, the ensemble), bytes of state
//! per series, classifier training and prediction time.
//! Targets (DESIGN.md): ≥ 5,000,000 points/s per core for one method, ≥ 1,000,000 for the
//! ensemble. `cargo bench --bench detect` prints the criterion figures; the throughput
//! lines are elements (points) per second.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vigil::detect::anomaly::{METHOD_NAMES, ModelConfig};
use vigil::detect::classifier::{FailureModel, FeatureExtractor, TrainConfig, synthetic_fleet};

fn series(n: usize) -> Vec<(i64, f64)> {
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
                50.0 + 20.0 * phase.sin() + 5.0 * noise,
            )
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    let pts = series(100_000);
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(pts.len() as u64));
    group.sample_size(20);
    for name in METHOD_NAMES {
        let cfg = match ModelConfig::by_name(name) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        // Warm the method first: steady state is what a long-running detector sees.
        group.bench_function(*name, |b| {
            b.iter_batched_ref(
                || {
                    let mut m = cfg.build().expect("default config");
                    for &(t, x) in &pts[..5000] {
                        m.update(t, x);
                    }
                    m
                },
                |m| {
                    let mut acc = 0.0;
                    for &(t, x) in &pts {
                        acc += m.update(t, x).value;
                    }
                    black_box(acc)
                },
                BatchSize::LargeInput,
            )
        });
        let mut m = cfg.build().expect("default config");
        for &(t, x) in &pts {
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
    group.finish();
}

criterion_group!(benches, scoring, classifier);
criterion_main!(benches);
