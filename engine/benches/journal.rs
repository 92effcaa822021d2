//! Durable journal transitions per second with batched (group-commit) flushes
//! (target ≥ 20,000/s): many concurrent writers each append a transition and wait
//! until it is durable.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_exec::record::ExecutionStore;
use vigil_exec::record::{Event, EventKind};
use vigil_store::Store;

const WRITERS: usize = 64;
const PER_WRITER: usize = 32;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut group = c.benchmark_group("journal");
    group.sample_size(20);
    group.throughput(Throughput::Elements((WRITERS * PER_WRITER) as u64));
    group.bench_function("durable_transitions_64_writers", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for w in 0..WRITERS {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        let id = format!("ex-{w:06}");
                        for i in 0..PER_WRITER {
                            let ev = Event {
                                seq: 0,
                                ts_ms: 0,
                                step: Some(format!("s{i}")),
                                kind: EventKind::Started,
                                attempt: 1,
                                detail: None,
                                output: None,
                            };
                            store.append(&id, ev).unwrap();
                            store.sync().await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_durable_transition", |b| {
        b.iter(|| {
            rt.block_on(async {
                let ev = Event {
                    seq: 0,
                    ts_ms: 0,
                    step: Some("s".into()),
                    kind: EventKind::Started,
                    attempt: 1,
                    detail: None,
                    output: None,
                };
                store.append("ex-single", ev).unwrap();
                store.sync().await.unwrap();
            })
        })
    });
    group.bench_function("append_without_flush", |b| {
        b.iter(|| {
            let ev = Event {
                seq: 0,
                ts_ms: 0,
                step: Some("s".into()),
                kind: EventKind::Started,
                attempt: 1,
                detail: Some("set x".into()),
                output: Some(serde_json::json!({"x": 1})),
            };
            store.append("ex-append", ev).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
