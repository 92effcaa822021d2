use super::super::noise;
use super::*;

/// Every context's count, the repeats still deferred included.
fn settled_counts(m: &ContextLearner) -> Vec<u32> {
    let mut memory = m.memory.clone();
    memory.settle();
    memory.counts
}

fn run(m: &mut ContextLearner, xs: &[f64], from: usize) -> Vec<f64> {
    xs.iter()
        .enumerate()
        .map(|(i, &x)| m.update(((from + i) * 300) as i64, x).value)
        .collect()
}

#[test]
fn a_new_sequence_inside_the_usual_range_is_news() {
    // A sawtooth 0..7 learnt for 3000 points, then the same values in another order:
    // nothing is out of range, every value has been seen thousands of times, only
    // the sequence is new. A value-deviation method sees nothing; context learning does.
    let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
    let saw: Vec<f64> = (0..3000).map(|i| (i % 8) as f64).collect();
    let learnt = run(&mut m, &saw, 0);
    let settled = learnt[2000..].iter().cloned().fold(0.0, f64::max);
    assert!(settled < 0.3, "a learnt sawtooth still scores {settled}");
    let shuffled: Vec<f64> = (0..40).map(|i| ((i * 5 + 3) % 8) as f64).collect();
    let scores = run(&mut m, &shuffled, 3000);
    let peak = scores.iter().cloned().fold(0.0, f64::max);
    assert!(peak >= 0.75, "the new sequence scored only {peak}");
    let s = m.update(3040 * 300, 1.0);
    assert!(s.explanation().contains("never seen before"), "{s}");
}

#[test]
fn a_new_extreme_is_new_facts() {
    let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
    let mut r = noise(5);
    let xs: Vec<f64> = (0..2000).map(|i| 10.0 + (i % 24) as f64 + r()).collect();
    run(&mut m, &xs, 0);
    let before = m.facts(20.0);
    let beyond = m.facts(500.0);
    assert_eq!(before.len(), 3);
    assert!(beyond.len() > 3 && beyond.iter().any(|f| !before.contains(f) && *f >= 6));
    assert!(m.facts(-500.0).contains(&(NEURON - 1)));
}

#[test]
fn a_known_range_is_used_as_given() {
    let cfg = ContextConfig {
        range: Some([0.0, 100.0]),
        ..ContextConfig::default()
    };
    let mut m = ContextLearner::new(cfg).expect("valid");
    m.update(0, 50.0);
    assert_eq!((m.lo, m.hi), (0.0, 100.0));
    // 3 bits over 0..100: 100 is level 7, 50 level 3.
    assert_eq!(m.facts(100.0), vec![1, 3, 5]);
    assert_eq!(m.facts(50.0), vec![1, 3, 4]);
    for bad in [[1.0, 1.0], [2.0, 1.0], [0.0, f64::INFINITY]] {
        let cfg = ContextConfig {
            range: Some(bad),
            ..ContextConfig::default()
        };
        assert!(ContextLearner::new(cfg).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn memory_stops_at_its_cap_and_state_stops_growing() {
    // White noise makes new contexts all the time: the worst case for memory.
    let cfg = ContextConfig {
        max_contexts: 2048,
        ..ContextConfig::default()
    };
    let mut m = ContextLearner::new(cfg).expect("valid");
    let mut r = noise(11);
    let xs: Vec<f64> = (0..6000).map(|_| r() * 100.0).collect();
    run(&mut m, &xs[..3000], 0);
    assert_eq!(m.memory.contexts.len(), 2048);
    let memory = |m: &ContextLearner| m.state_bytes() - m.memory.replays.state_bytes();
    let full = memory(&m);
    let scores = run(&mut m, &xs[3000..], 3000);
    assert_eq!(memory(&m), full, "state grew past the cap");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    // The replay record has its own bound: its steps, their keys (the previous
    // step's facts and a value) and neuron ids, the context ids they hold, and the
    // hashes of steps seen once.
    let per_step = std::mem::size_of::<ReplayStep>()
        + std::mem::size_of::<(Facts, u32)>()
        + 16
        + (MAX_FACTS + 1) * std::mem::size_of::<u64>()
        + MAX_FACTS * std::mem::size_of::<u32>();
    let bound = MAX_REPLAY_STEPS * per_step
        + MAX_REPLAY_SLOTS * std::mem::size_of::<u32>()
        + MAX_SEEN_ONCE * 16;
    assert!(m.memory.replays.state_bytes() <= bound);
}

#[test]
fn rests_after_an_alarm() {
    let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
    let saw: Vec<f64> = (0..3000).map(|i| (i % 8) as f64).collect();
    run(&mut m, &saw, 0);
    let odd: Vec<f64> = (0..200).map(|i| ((i * 5 + 3) % 8) as f64).collect();
    let scores = run(&mut m, &odd, 3000);
    let first = scores.iter().position(|&s| s >= 0.75).expect("an alarm");
    let rest = &scores[first + 1..(first + 1 + 150).min(scores.len())];
    assert!(rest.iter().all(|&s| s == 0.0), "no rest after the alarm");
}

#[test]
fn non_finite_values_are_skipped_and_not_learnt() {
    let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
    for x in [1.0, f64::NAN, f64::INFINITY, 2.0] {
        let s = m.update(0, x);
        assert!(s.value.is_finite());
    }
    assert_eq!(m.seen, 2);
    assert_eq!((m.lo, m.hi), (1.0, 2.0));
}

#[test]
fn a_replayed_step_scores_as_the_full_prediction_does() {
    // Series that settle (nearly every step replayed; the daily one also fills the
    // record's bound on context ids, so the record starts over once), that keep
    // learning (new contexts added to recorded steps), that fill the memory, and
    // that change their sequence after settling: every score and every context's
    // count must be the same as without replays.
    let mut r = noise(3);
    let daily: Vec<f64> = (0..20_000)
        .map(|i| 50.0 + 20.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin() + 5.0 * r())
        .collect();
    let mut walk = vec![0.0];
    for _ in 0..6000 {
        walk.push(walk[walk.len() - 1] + r() - 0.5);
    }
    let white: Vec<f64> = (0..6000).map(|_| r() * 100.0).collect();
    let saw: Vec<f64> = (0..8000)
        .map(|i| if i < 5000 { i % 8 } else { (i * 5 + 3) % 8 } as f64)
        .collect();
    let small = ContextConfig {
        max_contexts: 2048,
        ..ContextConfig::default()
    };
    let cases = [
        ("daily", ContextConfig::default(), daily),
        ("walk", ContextConfig::default(), walk),
        ("white, memory full", small, white),
        (
            "sawtooth, then another order",
            ContextConfig::default(),
            saw,
        ),
    ];
    for (name, cfg, xs) in cases {
        let mut replaying = ContextLearner::new(cfg.clone()).expect("valid");
        let mut full = ContextLearner::new(cfg).expect("valid");
        full.memory.replaying = false;
        for (i, &x) in xs.iter().enumerate() {
            let (a, b) = (replaying.update(i as i64, x), full.update(i as i64, x));
            assert_eq!(a.value.to_bits(), b.value.to_bits(), "{name}: point {i}");
        }
        assert_eq!(settled_counts(&replaying), settled_counts(&full), "{name}");
        assert!(full.memory.replays.steps.is_empty());
        if name == "daily" {
            // Each step neither replayed nor learning is recorded: few were not replays.
            let recorded = replaying.memory.replays.steps.len();
            assert!(recorded < xs.len() / 10, "{recorded} steps recorded");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Any series (a few levels, so steps repeat; a motif repeated, so they settle;
    /// rare jumps beyond the range), any cap and strongest count: replays change
    /// nothing.
    #[test]
    fn replays_are_exact_on_any_series(
        motif in proptest::collection::vec(0u8..6, 2..24),
        noise in proptest::collection::vec(0u8..6, 600..1200),
        jumps in proptest::collection::vec(0usize..1200, 0..4),
        max_contexts in 16usize..700,
        max_active in 1usize..20,
    ) {
        let xs: Vec<f64> = noise
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let level = if i % 3 == 0 { n } else { motif[i % motif.len()] };
                if jumps.contains(&i) { 40.0 } else { f64::from(level) }
            })
            .collect();
        let cfg = ContextConfig { max_contexts, max_active, min_points: 0, ..ContextConfig::default() };
        let mut replaying = ContextLearner::new(cfg.clone()).expect("valid");
        let mut full = ContextLearner::new(cfg).expect("valid");
        full.memory.replaying = false;
        for (i, &x) in xs.iter().enumerate() {
            let (a, b) = (replaying.update(i as i64, x), full.update(i as i64, x));
            proptest::prop_assert_eq!(a.value.to_bits(), b.value.to_bits(), "point {}", i);
        }
        proptest::prop_assert_eq!(settled_counts(&replaying), settled_counts(&full));
    }

    /// Any series, any cap (full memories and growing ones): looking a learning
    /// step's potential contexts up by mask gives what remembering each gives.
    #[test]
    fn looking_potential_contexts_up_is_remembering_them(
        noise in proptest::collection::vec(0u8..8, 300..900),
        jumps in proptest::collection::vec(0usize..900, 0..4),
        max_contexts in 16usize..3000,
    ) {
        let xs: Vec<f64> = noise
            .iter()
            .enumerate()
            .map(|(i, &n)| if jumps.contains(&i) { 40.0 } else { f64::from(n) })
            .collect();
        let cfg = ContextConfig { max_contexts, min_points: 0, ..ContextConfig::default() };
        let mut looking = ContextLearner::new(cfg.clone()).expect("valid");
        let mut plain = ContextLearner::new(cfg).expect("valid");
        plain.looking_up = false;
        for (i, &x) in xs.iter().enumerate() {
            let (a, b) = (looking.update(i as i64, x), plain.update(i as i64, x));
            proptest::prop_assert_eq!(a.value.to_bits(), b.value.to_bits(), "point {}", i);
        }
        proptest::prop_assert_eq!(looking.memory.contexts.len(), plain.memory.contexts.len());
        proptest::prop_assert_eq!(settled_counts(&looking), settled_counts(&plain));
    }
}

#[test]
fn positions_by_folding_are_positions_by_rank() {
    // Steps of every width (up to the 31 facts of a huge level) and below the range:
    // for subsets of their facts, folding value bits gives each one's rank.
    for bits in [1, 3, 8, 16] {
        let cfg = ContextConfig {
            bits,
            range: Some([0.0, 100.0]),
            ..ContextConfig::default()
        };
        let m = ContextLearner::new(cfg).expect("valid");
        for x in [
            -5e12, -250.0, -1.0, 0.0, 3.3, 50.0, 99.9, 100.0, 250.0, 7e8, 1e15,
        ] {
            let step = value_bits(&m.facts(x));
            for k in 0..4096u64 {
                let held = step & k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                assert_eq!(
                    positions(held, step),
                    positions_by_rank(held, step),
                    "{held:#x} of {step:#x} ({x})"
                );
            }
        }
    }
}

#[test]
fn the_anchor_index_finds_exactly_the_fully_held_semi_contexts() {
    // A noisy seasonal series builds semi-contexts with value and neuron facts; at
    // every step, the anchor lookup must agree with testing every semi-context.
    let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
    let mut r = noise(7);
    for i in 0..4000 {
        let x = 50.0 + 20.0 * (i as f64 / 40.0).sin() + 8.0 * r();
        m.update(i * 60, x);
        if i % 8 != 0 {
            continue;
        }
        m.catch_up_left();
        let side = &mut m.memory.left;
        side.collect_full(&m.previous);
        let side = &m.memory.left;
        let held: std::collections::BTreeSet<u32> = side
            .ids
            .iter()
            .filter(|(facts, _)| facts.iter().all(|f| m.previous.contains(f)))
            .map(|(_, &id)| id)
            .collect();
        let found: std::collections::BTreeSet<u32> = side.full.iter().copied().collect();
        assert_eq!(found, held, "step {i}");
        assert_eq!(found.len(), side.full.len(), "a semi-context found twice");
        for (facts, &id) in &side.ids {
            let c = side.crossing(id);
            let expected = facts.iter().filter(|f| m.previous.contains(f)).count();
            assert_eq!(c.hits as usize, expected, "step {i}");
            assert_eq!(c.full, expected == facts.len());
        }
    }
    assert!(
        m.memory.left.neuron_pool.len() > 100,
        "few neuron facts learnt"
    );
}
