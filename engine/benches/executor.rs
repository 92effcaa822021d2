//! Executor overhead per step on a 1,000-step DAG of `core/set` no-op steps
//! (target ≤ 10 µs/step), journaled in a real sled store.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::sync::Arc;
use vigil_bundle::Bundle;
use vigil_exec::core::Catalog;
use vigil_exec::{Executor, Request};
use vigil_store::Store;

/// `width` independent chains of `depth` steps, joined at the end: 1,000 steps.
fn dag_runbook(width: usize, depth: usize) -> String {
    let mut s =
        String::from("apiVersion: vigil/v1\nkind: Runbook\nname: bench\nconcurrency: 64\nsteps:\n");
    for w in 0..width {
        for d in 0..depth {
            s.push_str(&format!("  - id: s{w}_{d}\n    uses: core/set\n"));
            if d > 0 {
                s.push_str(&format!("    needs: [s{w}_{}]\n", d - 1));
            }
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("executor");
    group.sample_size(20);
    for (name, width, depth) in [
        ("1000_steps_wide_10x100", 10, 100),
        ("1000_steps_chain_1x1000", 1, 1000),
    ] {
        let text = dag_runbook(width, depth);
        let bundle = Bundle::from_source(Path::new("bench.yaml"), &text);
        assert!(!bundle.has_errors(), "{:?}", bundle.diagnostics);
        let runbook = Arc::new(bundle.runbooks[0].clone());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let executor =
            Executor::new(Arc::new(Catalog::with_core()), store).with_max_concurrency(64);
        group.throughput(Throughput::Elements((width * depth) as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    Request::manual(
                        runbook.clone(),
                        text.clone(),
                        Default::default(),
                        serde_json::Value::Null,
                    )
                },
                |req| {
                    let report = rt.block_on(executor.start(req)).unwrap();
                    assert_eq!(report.steps.len(), width * depth);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
