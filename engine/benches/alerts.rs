//! Alert ingestion:
//! - in process: ingest + dedup + group (target ≥ 200,000 alerts/s);
//! - over HTTP: `POST /api/v1/alerts` to a real server (axum, sled, group commit)
//!   from a bounded local load generator (target ≥ 20,000 alerts/s);
//! - p99 latency of an acknowledged (durable) POST, printed;
//! - ingest + grouping + correlation of 20,000 and 200,000 distinct alerts (distinct
//!   names, services and instances: one incident each), per alert;
//! - ingest + correlation of 100 groups × 1,000 alerts that share a correlation
//!   label (one incident of 100,000 members), then a flush of every group again with
//!   one alert of each resolved, per alert.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::api::{Api, ApiConfig, Principals};
use vigil_alert::trigger::Trigger;
use vigil_alert::{AlertService, AlertStatus, Engine, IncomingAlert, Labels};
use vigil_bundle::model::{Alerting, TriggerMode};
use vigil_exec::core::Catalog;
use vigil_store::Store;
use vigil_telemetry::Metrics;

const TOKEN: &str = "bench";

fn alert(i: usize) -> IncomingAlert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), format!("Alert{}", i % 50));
    labels.insert("service".into(), format!("svc{}", i % 200));
    labels.insert("instance".into(), format!("host{i}:9100"));
    labels.insert("cluster".into(), "prod".into());
    labels.insert(
        "severity".into(),
        if i.is_multiple_of(7) {
            "critical"
        } else {
            "warning"
        }
        .into(),
    );
    IncomingAlert {
        labels,
        annotations: Labels::new(),
        status: AlertStatus::Firing,
        starts_at_ms: None,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

fn in_process(c: &mut Criterion) {
    const N: usize = 100_000;
    // 10,000 distinct alerts, each arriving ten times (dedup), in 10,000 groups of
    // alertname × service.
    let alerts: Vec<IncomingAlert> = (0..N).map(|i| alert(i % 10_000)).collect();
    let mut group = c.benchmark_group("alerts");
    group.sample_size(20);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("ingest_dedup_group_in_process", |b| {
        b.iter_batched(
            || {
                (
                    Engine::new(Alerting::default(), &Default::default()),
                    alerts.clone(),
                )
            },
            |(mut engine, batch)| {
                for (i, a) in batch.into_iter().enumerate() {
                    engine.ingest(a, i as i64);
                }
                assert_eq!(engine.alert_count(), 10_000);
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// An alert unlike every other: its own name, service and instance.
fn distinct(i: usize) -> IncomingAlert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), format!("Distinct{i}"));
    labels.insert("service".into(), format!("svc-{i}"));
    labels.insert("instance".into(), format!("host-{i}:9100"));
    labels.insert("severity".into(), "warning".into());
    IncomingAlert {
        labels,
        annotations: Labels::new(),
        status: AlertStatus::Firing,
        starts_at_ms: None,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

/// Ingest of N distinct alerts, then the tick that flushes their N groups and
/// correlates each into its own incident. Throughput is per alert.
fn correlation(c: &mut Criterion) {
    let mut group = c.benchmark_group("alerts");
    group.sample_size(10);
    for n in [20_000usize, 200_000] {
        let alerts: Vec<IncomingAlert> = (0..n).map(distinct).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("ingest_correlate_distinct_{n}"), |b| {
            b.iter_batched(
                || alerts.clone(),
                |batch| {
                    let cfg = Alerting::default();
                    let wait = cfg.group_wait.as_std().as_millis() as i64;
                    let mut engine = Engine::new(cfg, &Default::default());
                    for a in batch {
                        engine.ingest(a, 0);
                    }
                    let r = engine.tick(wait);
                    assert_eq!(r.flushed_groups, n);
                    assert_eq!(engine.open_incidents(), n);
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Alert `i` of groups that all share `cluster: bench`: 100 groups (alertname ×
/// service), one instance per alert.
fn shared(i: usize, status: AlertStatus) -> IncomingAlert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), format!("BenchAlert{}", i % 10));
    labels.insert("service".into(), format!("svc{}", i % 100));
    labels.insert("cluster".into(), "bench".into());
    labels.insert("instance".into(), format!("host{i}:9100"));
    IncomingAlert {
        labels,
        annotations: Labels::new(),
        status,
        starts_at_ms: None,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

/// Groups that all fold into one incident: the first flush of each group, then a
/// flush of each again after one of its alerts resolved. A group's flush should cost
/// what the group holds, not what the incident holds. Throughput is per alert.
fn one_incident(c: &mut Criterion) {
    const GROUPS: usize = 100;
    const PER_GROUP: usize = 1_000;
    const N: usize = GROUPS * PER_GROUP;
    let alerts: Vec<IncomingAlert> = (0..N).map(|i| shared(i, AlertStatus::Firing)).collect();
    let resolved: Vec<IncomingAlert> = (0..GROUPS)
        .map(|i| shared(i, AlertStatus::Resolved))
        .collect();
    let mut group = c.benchmark_group("alerts");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function(
        format!("ingest_correlate_one_incident_{GROUPS}x{PER_GROUP}"),
        |b| {
            b.iter_batched(
                || (alerts.clone(), resolved.clone()),
                |(batch, resolved)| {
                    // Alerts that stay firing between the two flushes unless resolved.
                    let cfg = Alerting {
                        resolve_timeout: vigil_core::duration::Duration::from_secs(3600),
                        ..Alerting::default()
                    };
                    let wait = cfg.group_wait.as_std().as_millis() as i64;
                    let interval = cfg.group_interval.as_std().as_millis() as i64;
                    let mut engine = Engine::new(cfg, &Default::default());
                    for a in batch {
                        engine.ingest(a, 0);
                    }
                    assert_eq!(engine.tick(wait).flushed_groups, GROUPS);
                    assert_eq!(engine.open_incidents(), 1);
                    for a in resolved {
                        engine.ingest(a, wait + 1);
                    }
                    assert_eq!(engine.tick(wait + interval).flushed_groups, GROUPS);
                    assert_eq!(engine.open_incidents(), 1);
                    engine
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
}

struct Server {
    base: String,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let base = rt.block_on(async {
        let catalog = Arc::new(Catalog::with_core());
        let trigger = Trigger::new(Vec::new(), catalog, None, TriggerMode::DryRun);
        let svc = AlertService::open(
            store,
            Engine::new(Alerting::default(), &Default::default()),
            trigger,
            Arc::new(Metrics::new()),
        )
        .unwrap();
        svc.spawn_ticker(Duration::from_millis(200));
        let cfg = ApiConfig {
            principals: Principals::shared([TOKEN]),
            rate_limit: 1_000_000,
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(vigil::api::serve(
            listener,
            Api::new(svc, cfg),
            std::future::pending(),
        ));
        format!("http://{addr}/api/v1/alerts")
    });
    Server {
        base,
        _rt: rt,
        _dir: dir,
    }
}

fn body(start: usize, n: usize) -> Vec<u8> {
    let alerts: Vec<_> = (start..start + n)
        .map(|i| {
            json!({"status": "firing", "labels": {"alertname": format!("Alert{}", i % 50), "service": format!("svc{}", i % 200), "instance": format!("host{}:9100", i % 5000)},
                   "annotations": {"summary": "bench"}, "startsAt": "2024-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph"})
        })
        .collect();
    serde_json::to_vec(&json!({"version": "4", "status": "firing", "receiver": "vigil", "groupKey": "{}", "alerts": alerts})).unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, b: &[u8]) {
    let r = agent
        .post(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .content_type("application/json")
        .send(b)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let _ = r.into_body().read_to_vec();
}

fn http(c: &mut Criterion) {
    const CLIENTS: usize = 8;
    const PER_REQUEST: usize = 100;
    let s = server();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..64)
            .map(|i| body(i * PER_REQUEST, PER_REQUEST))
            .collect(),
    );

    // p99 of an acknowledged POST (10 alerts), one client, after a warm-up.
    let a = agent();
    let small: Vec<Vec<u8>> = (0..32).map(|i| body(i * 10, 10)).collect();
    for b in small.iter().take(50) {
        post(&a, &s.base, b);
    }
    let mut lat: Vec<Duration> = (0..2000)
        .map(|i| {
            let t = Instant::now();
            post(&a, &s.base, &small[i % small.len()]);
            t.elapsed()
        })
        .collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "alerts/http_ack_latency (10 alerts per POST, durable): p50 {:.2?} p99 {:.2?} max {:.2?}",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );

    let mut group = c.benchmark_group("alerts");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements((CLIENTS * PER_REQUEST) as u64));
    group.bench_function("http_ingest_8_clients_100_per_post", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let threads: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let url = s.base.clone();
                    let bodies = bodies.clone();
                    std::thread::spawn(move || {
                        let a = agent();
                        for i in 0..iters as usize {
                            post(&a, &url, &bodies[(c * 7 + i) % bodies.len()]);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, in_process, correlation, one_incident, http);
criterion_main!(benches);
