//! Replay of a generated alert storm with ground truth: two cascading failures
//! across dependent services (each alert re-sent as Alertmanager would), plus
//! unrelated noise. Prints alert→incident reduction, the share of related alerts
//! folded into the right incident, and root-cause accuracy, and checks the targets
//! (≥ 60 % reduction, ≥ 80 % folded).

use std::collections::{BTreeMap, HashMap};
use vigil_alert::{AlertStatus, Engine, IncomingAlert, Labels, fingerprint, fingerprint_hex};
use vigil_bundle::model::Alerting;
use vigil_core::duration::Duration;

/// A tiny deterministic PRNG (xorshift), so the storm is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn topology() -> BTreeMap<String, Vec<String>> {
    let mut t = BTreeMap::new();
    for (s, deps) in [
        ("db", vec![]),
        ("cache", vec![]),
        ("auth", vec!["db"]),
        ("payments", vec!["db"]),
        ("orders", vec!["payments", "cache"]),
        ("checkout", vec!["orders", "auth"]),
        ("frontend", vec!["checkout"]),
        ("search", vec!["cache"]),
        ("batch", vec![]),
        ("mail", vec![]),
        ("reports", vec![]),
    ] {
        t.insert(s.to_string(), deps.into_iter().map(String::from).collect());
    }
    t
}

struct Event {
    at_ms: i64,
    alert: IncomingAlert,
    /// Ground truth: which failure it belongs to (`noise-N` for unrelated ones).
    truth: String,
}

fn alert(
    name: &str,
    service: &str,
    instance: &str,
    cluster: &str,
    severity: &str,
) -> IncomingAlert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), name.into());
    labels.insert("service".into(), service.into());
    labels.insert("instance".into(), instance.into());
    labels.insert("cluster".into(), cluster.into());
    labels.insert("severity".into(), severity.into());
    IncomingAlert {
        labels,
        annotations: Labels::new(),
        status: AlertStatus::Firing,
        starts_at_ms: None,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

/// A cascade: the root service fails first, then each dependent layer a little later;
/// every alert is re-sent every 30 s while it fires, then resolves.
fn cascade(
    rng: &mut Rng,
    out: &mut Vec<Event>,
    truth: &str,
    cluster: &str,
    start_ms: i64,
    layers: &[(&str, &[&str], u32)],
) {
    for (depth, (service, names, instances)) in layers.iter().enumerate() {
        for name in *names {
            for i in 0..*instances {
                let begin = start_ms + depth as i64 * 45_000 + rng.below(30_000) as i64;
                let sev = if depth == 0 {
                    "critical"
                } else if rng.below(2) == 0 {
                    "warning"
                } else {
                    "critical"
                };
                let a = alert(
                    name,
                    service,
                    &format!("{service}-{i}.{cluster}:9100"),
                    cluster,
                    sev,
                );
                let mut at = begin;
                let end = start_ms + 15 * 60_000 + rng.below(60_000) as i64;
                while at < end {
                    let mut a = a.clone();
                    a.starts_at_ms = Some(begin);
                    out.push(Event {
                        at_ms: at,
                        alert: a,
                        truth: truth.into(),
                    });
                    at += 30_000;
                }
                let mut r = a.clone();
                r.status = AlertStatus::Resolved;
                r.starts_at_ms = Some(begin);
                r.ends_at_ms = Some(end);
                out.push(Event {
                    at_ms: end,
                    alert: r,
                    truth: truth.into(),
                });
            }
        }
    }
}

fn storm() -> Vec<Event> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut ev = Vec::new();
    cascade(
        &mut rng,
        &mut ev,
        "db-outage",
        "prod-a",
        0,
        &[
            ("db", &["DBDown", "DBReplicationLag"], 2),
            ("payments", &["HighErrorRate", "HighLatency"], 4),
            ("auth", &["HighErrorRate"], 3),
            ("orders", &["HighErrorRate", "QueueBacklog"], 4),
            ("checkout", &["HighErrorRate", "HighLatency"], 5),
            ("frontend", &["Http5xx", "HighLatency", "ApdexLow"], 6),
        ],
    );
    cascade(
        &mut rng,
        &mut ev,
        "cache-outage",
        "prod-b",
        40 * 60_000,
        &[
            ("cache", &["CacheDown", "CacheEvictions"], 3),
            ("search", &["HighLatency", "HighErrorRate"], 5),
            ("orders", &["HighLatency"], 4),
        ],
    );
    // Unrelated noise across the whole window: each is its own problem.
    let noise = [
        ("batch", "JobFailed"),
        ("mail", "CertExpiringSoon"),
        ("reports", "DiskWillFill"),
        ("batch", "CPUThrottling"),
    ];
    for n in 0..40 {
        let (service, name) = noise[(rng.below(noise.len() as u64)) as usize];
        let at = rng.below(80 * 60_000) as i64;
        let a = alert(
            name,
            service,
            &format!("{service}-{}.noise:9100", rng.below(50)),
            "prod-c",
            "warning",
        );
        let mut r = a.clone();
        out_push(&mut ev, at, a, &format!("noise-{n}"));
        r.status = AlertStatus::Resolved;
        out_push(&mut ev, at + 5 * 60_000, r, &format!("noise-{n}"));
    }
    ev.sort_by_key(|e| e.at_ms);
    ev
}

fn out_push(ev: &mut Vec<Event>, at: i64, a: IncomingAlert, truth: &str) {
    ev.push(Event {
        at_ms: at,
        alert: a,
        truth: truth.into(),
    });
}

#[test]
fn storm_replay_reduces_noise_and_finds_root_causes() {
    let events = storm();
    let cfg = Alerting {
        group_wait: Duration::from_secs(10),
        group_interval: Duration::from_secs(60),
        repeat_interval: Duration::from_secs(4 * 3600),
        correlation_window: Duration::from_secs(600),
        ..Alerting::default()
    };
    let mut engine = Engine::new(cfg, &topology());
    let base = 1_700_000_000_000i64;
    let mut truth: HashMap<String, String> = HashMap::new();
    let mut incident_of: HashMap<String, String> = HashMap::new();
    let mut next_tick = base;
    let end = events.last().map_or(0, |e| e.at_ms) + 20 * 60_000;
    let mut i = 0;
    let mut received = 0usize;
    while next_tick <= base + end {
        while i < events.len() && base + events[i].at_ms <= next_tick {
            let e = &events[i];
            truth.insert(
                fingerprint_hex(fingerprint(&e.alert.labels)),
                e.truth.clone(),
            );
            let mut a = e.alert.clone();
            a.starts_at_ms = a.starts_at_ms.map(|s| s + base);
            a.ends_at_ms = a.ends_at_ms.map(|s| s + base);
            engine.ingest(a, base + e.at_ms);
            received += 1;
            i += 1;
        }
        let r = engine.tick(next_tick);
        for a in r.changed_alerts {
            if let Some(id) = a.incident {
                incident_of.insert(a.fingerprint.to_string(), id);
            }
        }
        next_tick += 1_000;
    }
    // Follow merges to the incident each alert ended up in.
    let final_of = |id: &str| {
        let mut id = id.to_string();
        while let Some(next) = engine.incident(&id).and_then(|i| i.merged_into.clone()) {
            id = next;
        }
        id
    };
    let incidents: Vec<_> = engine
        .incidents()
        .filter(|i| i.merged_into.is_none())
        .collect();
    let unique = truth.len();
    let reduction = 1.0 - incidents.len() as f64 / unique as f64;

    let mut related_total = 0usize;
    let mut related_right = 0usize;
    let mut roots_right = 0usize;
    let mut cascades = 0usize;
    for (scenario, root_service) in [("db-outage", "db"), ("cache-outage", "cache")] {
        cascades += 1;
        let members: Vec<&String> = truth
            .iter()
            .filter(|(_, t)| *t == scenario)
            .map(|(fp, _)| fp)
            .collect();
        let mut by_incident: HashMap<String, usize> = HashMap::new();
        for fp in &members {
            if let Some(id) = incident_of.get(*fp) {
                *by_incident.entry(final_of(id)).or_default() += 1;
            }
        }
        let (best, n) = by_incident
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(i, n)| (i.clone(), *n))
            .unwrap_or_default();
        related_total += members.len();
        related_right += n;
        let inc = engine.incident(&best).expect("the scenario's incident");
        let noise_in = inc
            .alerts
            .iter()
            .filter(|m| {
                truth
                    .get(&m.fingerprint.to_string())
                    .is_some_and(|t| t.starts_with("noise"))
            })
            .count();
        println!(
            "  {scenario}: {} alerts, {n} in {best} ({} alerts, {noise_in} noise), root cause {} (truth {root_service})",
            members.len(),
            inc.alerts.len(),
            inc.root_service.as_deref().unwrap_or("?")
        );
        if inc.root_service.as_deref() == Some(root_service) {
            roots_right += 1;
        }
    }
    let folded = related_right as f64 / related_total as f64;
    let noise_alerts = truth.values().filter(|t| t.starts_with("noise")).count();
    println!("alert storm replay:");
    println!("  alerts received        {received} ({unique} distinct, {noise_alerts} noise)");
    println!("  incidents              {}", incidents.len());
    println!(
        "  alert→incident reduction {:.1}% of distinct alerts ({:.1}% of received)  target ≥ 60%",
        reduction * 100.0,
        (1.0 - incidents.len() as f64 / received as f64) * 100.0
    );
    println!(
        "  related alerts folded into the right incident {:.1}%  target ≥ 80%",
        folded * 100.0
    );
    println!("  root-cause accuracy    {roots_right}/{cascades}");
    assert!(reduction >= 0.60, "reduction {reduction}");
    assert!(folded >= 0.80, "folded {folded}");
    assert_eq!(roots_right, cascades, "every cascade's root service found");
    // Everything resolved in the end.
    assert!(
        incidents.iter().all(|i| !i.is_open()),
        "all incidents resolve when their alerts do"
    );
}

/// 20,000 distinct alerts (each its own name and service) at once, flushed in the
/// bounded turns the service uses: every alert is kept and lands in the incident the
/// rules make — pairs whose services depend on each other share one (root cause:
/// the dependency), triples sharing an `instance` share one, the rest are alone.
/// (How long it takes is `benches/alerts.rs`'s business, not this test's.)
#[test]
fn twenty_thousand_distinct_alerts_correlate_as_the_rules_say() {
    const N: usize = 20_000;
    const PAIRS: usize = 10_000; // 0..PAIRS: svc{2k} depends on svc{2k+1}
    const TRIPLES: usize = 16_000; // PAIRS..TRIPLES: instance shared by three
    let mut topo = BTreeMap::new();
    for k in 0..PAIRS / 2 {
        topo.insert(format!("svc{}", 2 * k), vec![format!("svc{}", 2 * k + 1)]);
    }
    let cfg = Alerting {
        group_wait: Duration::from_secs(10),
        ..Alerting::default()
    };
    let mut engine = Engine::new(cfg, &topo);
    let instance = |i: usize| {
        if (PAIRS..TRIPLES).contains(&i) {
            format!("shared-{}:9100", (i - PAIRS) / 3)
        } else {
            format!("host{i}:9100")
        }
    };
    let mut fps = Vec::with_capacity(N);
    for i in 0..N {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), format!("Alert{i}"));
        labels.insert("service".into(), format!("svc{i}"));
        labels.insert("instance".into(), instance(i));
        labels.insert("severity".into(), "warning".into());
        let a = IncomingAlert {
            labels,
            annotations: Labels::new(),
            status: AlertStatus::Firing,
            starts_at_ms: Some(i as i64),
            ends_at_ms: None,
            generator_url: String::new(),
        };
        fps.push(engine.ingest(a, 0));
    }
    assert_eq!(engine.alert_count(), N);
    assert_eq!(engine.group_count(), N);
    let (mut flushed, mut turns) = (0, 0);
    loop {
        let r = engine.tick_bounded(10_000, 4096);
        flushed += r.flushed_groups;
        turns += 1;
        if !r.more {
            break;
        }
    }
    assert_eq!(flushed, N, "every group flushed once");
    assert!(turns > 1, "the work was split into turns");
    assert_eq!(engine.tick(10_001).flushed_groups, 0, "nothing left due");

    let incident_of = |i: usize| {
        engine
            .alert(fps[i])
            .and_then(|r| r.incident.clone())
            .unwrap_or_else(|| panic!("alert {i} is in an incident"))
    };
    for k in 0..PAIRS / 2 {
        let (a, b) = (incident_of(2 * k), incident_of(2 * k + 1));
        assert_eq!(a, b, "svc{} and the svc{} it depends on", 2 * k, 2 * k + 1);
        let inc = engine.incident(&a).unwrap();
        assert_eq!(inc.alerts.len(), 2);
        assert_eq!(
            inc.root_service.as_deref(),
            Some(format!("svc{}", 2 * k + 1).as_str())
        );
    }
    for t in 0..(TRIPLES - PAIRS) / 3 {
        let i = PAIRS + 3 * t;
        let id = incident_of(i);
        assert_eq!(incident_of(i + 1), id);
        assert_eq!(incident_of(i + 2), id);
        assert_eq!(engine.incident(&id).unwrap().alerts.len(), 3);
    }
    for i in TRIPLES..N {
        assert_eq!(engine.incident(&incident_of(i)).unwrap().alerts.len(), 1);
    }
    let expected = PAIRS / 2 + (TRIPLES - PAIRS) / 3 + (N - TRIPLES);
    assert_eq!(engine.open_incidents(), expected);
    assert_eq!(
        engine
            .incidents()
            .filter(|i| i.merged_into.is_none())
            .count(),
        expected
    );
    let members: usize = engine.incidents().map(|i| i.alerts.len()).sum();
    assert_eq!(members, N, "each alert in exactly one incident");
}
