use super::*;
use vigil_bundle::model::InhibitRule;
use vigil_core::duration::Duration;

fn a(name: &str, service: &str, severity: &str) -> IncomingAlert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), name.into());
    labels.insert("service".into(), service.into());
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

fn engine() -> Engine {
    let cfg = Alerting {
        group_wait: Duration::from_secs(10),
        group_interval: Duration::from_secs(60),
        repeat_interval: Duration::from_secs(600),
        resolve_timeout: Duration::from_secs(3600),
        inhibit_rules: vec![InhibitRule {
            source: vec![Matcher::parse("severity", "critical").unwrap()],
            target: vec![Matcher::parse("severity", "warning").unwrap()],
            equal: vec!["service".into()],
        }],
        ..Alerting::default()
    };
    Engine::new(cfg, &BTreeMap::new())
}

#[test]
fn group_timing_survives_a_restart() {
    let cfg = Alerting {
        group_wait: vigil_core::duration::Duration::from_secs(30),
        group_interval: vigil_core::duration::Duration::from_secs(120),
        ..Alerting::default()
    };
    let mut a = Engine::new(cfg.clone(), &Default::default());
    let mut l = Labels::new();
    l.insert("alertname".into(), "Up".into());
    l.insert("service".into(), "db".into());
    let incoming = IncomingAlert {
        labels: l,
        annotations: Labels::new(),
        status: AlertStatus::Firing,
        starts_at_ms: Some(0),
        ends_at_ms: None,
        generator_url: String::new(),
    };
    a.ingest(incoming, 0);
    let told = a.tick(30_000);
    assert_eq!(told.flushed_groups, 1);
    let timings = told.changed_groups.clone();
    assert_eq!(timings.len(), 1);
    // A new process: the same alerts and the saved timing. Without the timing the
    // group would flush again at 60 s (a fresh group_wait); with it, it waits.
    let mut b = Engine::new(cfg, &Default::default());
    b.restore(
        a.alerts().cloned().collect(),
        a.incidents().cloned().collect(),
        Vec::new(),
        31_000,
    );
    b.restore_groups(timings);
    assert_eq!(
        b.tick(61_000).flushed_groups,
        0,
        "no repeat flush after the restart"
    );
    assert_eq!(b.tick(150_000).changed_groups[0].next_flush_ms, 270_000);
}

#[test]
fn duplicates_fold_and_groups_wait_then_flush_on_change_or_repeat() {
    let mut e = engine();
    let fp = e.ingest(a("X", "api", "info"), 0);
    assert_eq!(e.ingest(a("X", "api", "info"), 1_000), fp);
    assert_eq!(e.alert(fp).unwrap().count, 2);
    assert_eq!(e.stats.deduplicated, 1);
    assert_eq!(e.tick(9_999).flushed_groups, 0, "group_wait not over");
    let r = e.tick(10_000);
    assert_eq!(r.flushed_groups, 1);
    assert_eq!(r.changed_incidents.len(), 1);
    // Nothing changed: no flush at the next group_interval…
    e.ingest(a("X", "api", "info"), 20_000);
    assert_eq!(e.tick(70_000).flushed_groups, 0);
    // …a change flushes at the next interval…
    e.ingest(a("Y", "api", "info"), 75_000);
    assert_eq!(
        e.tick(80_000).flushed_groups,
        0,
        "Y is in a new group (alertname) that waits"
    );
    assert_eq!(
        e.tick(85_000).flushed_groups,
        1,
        "Y's own group_wait is over"
    );
    // …and repeat_interval re-sends an unchanged, firing group.
    e.ingest(a("X", "api", "info"), 600_000);
    assert_eq!(e.tick(610_000).flushed_groups, 1);
    assert_eq!(e.incidents().count(), 1, "same service: one incident");
}

/// One step of a random alert history.
#[derive(Clone, Debug)]
enum Op {
    Alert {
        name: u8,
        service: u8,
        instance: u8,
        cluster: Option<u8>,
        severity: u8,
        resolved: bool,
    },
    Wait(i64),
    /// `n` alerts of one name and service in cluster `c0`, instances `from..from+n`:
    /// groups that all correlate into one large incident.
    Burst {
        name: u8,
        service: u8,
        from: u16,
        n: u16,
        resolved: bool,
    },
    /// A manual status change of the n-th incident (resolve or acknowledge).
    Status(usize, bool),
    Silence(u8),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..4, 0u8..6, 0u8..3, proptest::option::of(0u8..2), 0u8..3, proptest::bool::weighted(0.25))
            .prop_map(|(name, service, instance, cluster, severity, resolved)| Op::Alert {
                name, service, instance, cluster, severity, resolved
            }),
        3 => (1i64..120_000).prop_map(Op::Wait),
        1 => (0usize..8, any::<bool>()).prop_map(|(n, r)| Op::Status(n, r)),
        1 => (0u8..6).prop_map(Op::Silence),
    ]
}

/// Histories where many groups fold into one incident, and members resolve,
/// leave and fire again.
fn op_large() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        5 => (0u8..3, 0u8..6, 0u16..100, 1u16..40, proptest::bool::weighted(0.3))
            .prop_map(|(name, service, from, n, resolved)| Op::Burst {
                name, service, from, n, resolved
            }),
        3 => (1i64..120_000).prop_map(Op::Wait),
        2 => op(),
    ]
}

fn oracle_pair() -> (Engine, Engine) {
    let cfg = Alerting {
        group_wait: Duration::from_secs(10),
        group_interval: Duration::from_secs(30),
        repeat_interval: Duration::from_secs(120),
        resolve_timeout: Duration::from_secs(90),
        correlation_window: Duration::from_secs(100),
        inhibit_rules: vec![InhibitRule {
            source: vec![Matcher::parse("severity", "critical").unwrap()],
            target: vec![Matcher::parse("severity", "warning").unwrap()],
            equal: vec!["service".into()],
        }],
        ..Alerting::default()
    };
    let mut topo = BTreeMap::new();
    topo.insert("s0".to_string(), vec!["s1".to_string()]);
    topo.insert("s1".to_string(), vec!["s2".to_string()]);
    topo.insert("s3".to_string(), vec!["s2".to_string()]);
    topo.insert("s4".to_string(), vec!["s5".to_string()]);
    topo.insert("s5".to_string(), vec!["s4".to_string()]);
    let indexed = Engine::new(cfg.clone(), &topo);
    let mut scan = Engine::new(cfg, &topo);
    scan.scan = true;
    (indexed, scan)
}

fn apply(e: &mut Engine, op: &Op, now: i64) -> String {
    match op {
        Op::Alert {
            name,
            service,
            instance,
            cluster,
            severity,
            resolved,
        } => {
            let sev = ["critical", "warning", "info"][usize::from(*severity)];
            let mut x = a(&format!("A{name}"), &format!("s{service}"), sev);
            x.labels.insert("instance".into(), format!("h{instance}"));
            if let Some(c) = cluster {
                x.labels.insert("cluster".into(), format!("c{c}"));
            }
            if *resolved {
                x.status = AlertStatus::Resolved;
            }
            format!("{:x}", e.ingest(x, now))
        }
        Op::Burst {
            name,
            service,
            from,
            n,
            resolved,
        } => {
            let mut fps = String::new();
            for i in *from..from + n {
                let mut x = a(&format!("B{name}"), &format!("s{service}"), "warning");
                x.labels.insert("instance".into(), format!("b{i}"));
                x.labels.insert("cluster".into(), "c0".into());
                if *resolved {
                    x.status = AlertStatus::Resolved;
                }
                fps.push_str(&format!("{:x} ", e.ingest(x, now)));
            }
            fps
        }
        Op::Wait(_) => {
            let r = e.tick(now);
            format!(
                "{} {:?} {:?} {:?} {:?} {:?} {}",
                r.flushed_groups,
                r.changed_groups,
                r.removed_groups,
                r.changed_incidents,
                r.events,
                r.changed_alerts,
                r.more
            )
        }
        Op::Status(n, resolve) => {
            let id = e.incidents().nth(*n).map(|i| i.id.clone());
            let status = if *resolve {
                IncidentStatus::Resolved
            } else {
                IncidentStatus::Acknowledged
            };
            format!(
                "{:?}",
                id.and_then(|id| e.set_status(&id, status, "t", now))
            )
        }
        Op::Silence(service) => {
            e.add_silence(Silence {
                id: format!("s{service}"),
                matchers: vec![Matcher::parse("service", &format!("s{service}")).unwrap()],
                starts_at_ms: now,
                ends_at_ms: now + 60_000,
                created_by: "t".into(),
                comment: String::new(),
                created_ms: now,
            });
            String::new()
        }
    }
}

fn state(e: &Engine) -> (String, Vec<String>, usize) {
    let incidents = serde_json::to_string(&e.incidents().collect::<Vec<_>>()).unwrap();
    let mut alerts: Vec<String> = e
        .alerts()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    alerts.sort();
    (incidents, alerts, e.open_incidents())
}

/// Runs `ops` on the indexed engine and on the scanning one, comparing every step,
/// then again on both restored from what they hold.
fn matches_the_scan(
    ops: &[Op],
    agg_min: usize,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let (mut fast, mut slow) = oracle_pair();
    fast.agg_min = agg_min;
    let mut now = 0i64;
    for op in ops {
        if let Op::Wait(d) = op {
            now += d;
        }
        proptest::prop_assert_eq!(apply(&mut fast, op, now), apply(&mut slow, op, now));
        proptest::prop_assert_eq!(state(&fast), state(&slow));
    }
    let (mut fast2, mut slow2) = oracle_pair();
    fast2.agg_min = agg_min;
    for (from, to) in [(&fast, &mut fast2), (&slow, &mut slow2)] {
        to.restore(
            from.alerts().cloned().collect(),
            from.incidents().cloned().collect(),
            from.silences().to_vec(),
            now,
        );
    }
    for op in ops {
        if let Op::Wait(d) = op {
            now += d;
        }
        proptest::prop_assert_eq!(apply(&mut fast2, op, now), apply(&mut slow2, op, now));
        proptest::prop_assert_eq!(state(&fast2), state(&slow2));
    }
    slow.check_against_scans(now);
    slow2.check_against_scans(now);
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// The indexed correlation (and the due and expiry queues, the inhibition
    /// counts, the incident aggregates) gives what the scans they replaced give,
    /// step by step — also after a restart from what was persisted.
    #[test]
    fn indexed_correlation_matches_the_scan(ops in proptest::collection::vec(op(), 1..80), agg_min in proptest::sample::select(vec![1, AGG_MIN_MEMBERS])) {
        matches_the_scan(&ops, agg_min)?;
    }

    /// The same where groups pile into one large incident whose members resolve,
    /// leave and fire again (the aggregates kept as members change).
    #[test]
    fn large_incidents_match_the_scan(ops in proptest::collection::vec(op_large(), 1..60), agg_min in proptest::sample::select(vec![1, AGG_MIN_MEMBERS])) {
        matches_the_scan(&ops, agg_min)?;
    }

    /// A tick in bounded turns ends where one tick ends.
    #[test]
    fn bounded_turns_end_where_one_tick_does(ops in proptest::collection::vec(op(), 1..80), budget in 1usize..6) {
        let (mut whole, _) = oracle_pair();
        let (mut turns, _) = oracle_pair();
        let mut now = 0i64;
        for op in &ops {
            match op {
                Op::Wait(d) => {
                    now += d;
                    let one = whole.tick(now);
                    let mut flushed = 0;
                    loop {
                        let r = turns.tick_bounded(now, budget);
                        flushed += r.flushed_groups;
                        if !r.more {
                            break;
                        }
                    }
                    proptest::prop_assert_eq!(one.flushed_groups, flushed);
                }
                op => {
                    apply(&mut whole, op, now);
                    apply(&mut turns, op, now);
                }
            }
            proptest::prop_assert_eq!(state(&whole), state(&turns));
        }
    }
}

/// Twenty groups of fifty alerts fold into one incident; members resolve, leave
/// and fire again, a service is silenced, the engine restarts: the aggregates
/// (kept, not rebuilt) give what the full recompute gives at every step.
#[test]
fn one_large_incident_matches_the_full_recompute() {
    let (mut fast, mut slow) = oracle_pair();
    let burst = |name: u8, service: u8, resolved: bool| Op::Burst {
        name,
        service,
        from: 0,
        n: 50,
        resolved,
    };
    let all = || (0..20).map(move |g| burst(g % 4, g % 6, false));
    // Alerts resolve unless seen within 90 s: every burst is sent again at 40 s,
    // which also brings back the two that resolved and left at 40 s.
    let mut ops: Vec<Op> = all().collect();
    ops.extend([Op::Wait(10_000), burst(1, 1, true), burst(2, 2, true)]);
    ops.push(Op::Wait(30_000));
    ops.extend(all());
    ops.extend([Op::Silence(3), Op::Wait(30_000)]);
    ops.extend([burst(0, 0, true), burst(3, 3, true), Op::Wait(30_000)]);
    ops.extend([burst(0, 0, false), Op::Wait(30_000)]);
    let mut now = 0;
    for op in &ops {
        if let Op::Wait(d) = op {
            now += d;
        }
        assert_eq!(apply(&mut fast, op, now), apply(&mut slow, op, now));
        assert_eq!(state(&fast), state(&slow));
    }
    let big = fast
        .incidents()
        .find(|i| i.is_open())
        .map(|i| (i.id.clone(), i.alerts.len()));
    let (id, members) = big.expect("one open incident");
    assert!(members >= 600, "{members} members");
    assert!(
        fast.open_sets.get(&id).is_some_and(|s| s.agg.is_some()),
        "kept by the aggregates"
    );
    matches_the_scan(&ops, AGG_MIN_MEMBERS).unwrap();
}

#[test]
fn inhibition_and_silences_mute() {
    let mut e = engine();
    let warn = e.ingest(a("Latency", "db", "warning"), 0);
    let other = e.ingest(a("Latency", "api", "warning"), 0);
    e.ingest(a("DBDown", "db", "critical"), 0);
    e.add_silence(Silence {
        id: "s".into(),
        matchers: vec![Matcher::parse("service", "api").unwrap()],
        starts_at_ms: 0,
        ends_at_ms: 1_000_000,
        created_by: "t".into(),
        comment: String::new(),
        created_ms: 0,
    });
    e.tick(10_000);
    assert!(e.alert(warn).unwrap().inhibited);
    assert_eq!(e.alert(other).unwrap().silenced_by, vec!["s".to_string()]);
    let members: usize = e.incidents().map(|i| i.alerts.len()).sum();
    assert_eq!(members, 1, "only DBDown reaches an incident");
    // When the source resolves, the inhibition lifts: the warning joins the incident,
    // which resolves only when that resolves too.
    let mut r = a("DBDown", "db", "critical");
    r.status = AlertStatus::Resolved;
    e.ingest(r, 20_000);
    e.tick(80_000);
    assert!(!e.alert(warn).unwrap().inhibited);
    let holder = e.alert(warn).unwrap().incident.clone().unwrap();
    assert!(e.incident(&holder).unwrap().is_open());
    let mut r = a("Latency", "db", "warning");
    r.status = AlertStatus::Resolved;
    e.ingest(r, 90_000);
    e.tick(140_000);
    assert!(e.incidents().all(|i| i.status == IncidentStatus::Resolved));
}
