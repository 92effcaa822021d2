use super::*;

/// The default ensemble with these member weights.
fn weighted(weights: MethodWeights) -> Ensemble {
    Ensemble::new(EnsembleConfig {
        weights,
        ..EnsembleConfig::default()
    })
    .expect("valid")
}

fn fed(interval: i64, points: i64) -> Ensemble {
    let mut e = Ensemble::new(EnsembleConfig::default()).expect("valid");
    for i in 0..points {
        e.update(1_400_000_000 + i * interval, (i % 7) as f64);
    }
    e
}

#[test]
fn point_counts_follow_the_sampling_interval() {
    let cfg = EnsembleConfig::default();
    // 5-minute data: the reference, nothing changes.
    let five = fed(300, 200);
    assert_eq!(five.refractory.points, cfg.refractory);
    assert_eq!(five.smooth.as_ref().map(|s| s.1.capacity()), Some(48));
    // Hourly data: a day is 24 points, not 288 (the 407 five-minute points of the
    // defaults are 33.9 h: 34 hourly points).
    let hourly = fed(3600, 200);
    assert_eq!(cfg.refractory, 407, "the comment above needs updating");
    assert_eq!(hourly.refractory.points, 34);
    assert_eq!(hourly.smooth.as_ref().map(|s| s.1.capacity()), Some(4));
    assert!((hourly.decay.powf(167.0) - 0.5).abs() < 1e-9);
    // Plain point counts when asked.
    let mut plain = Ensemble::new(EnsembleConfig {
        reference_interval: None,
        ..EnsembleConfig::default()
    })
    .expect("valid");
    for i in 0..200 {
        plain.update(i * 3600, (i % 7) as f64);
    }
    assert_eq!(plain.refractory.points, cfg.refractory);
}

#[test]
fn a_combined_alarm_damps_what_follows_unless_it_is_worse() {
    let mut e = Ensemble::new(EnsembleConfig {
        combined_refractory: 3,
        reference_interval: None,
        ..EnsembleConfig::default()
    })
    .expect("valid");
    assert_eq!(e.combined_refractory(0.4), 0.4, "below the alarm level");
    assert_eq!(e.combined_refractory(0.6), 0.6, "the alarm");
    assert!(
        (e.combined_refractory(0.55) - 0.055).abs() < 1e-12,
        "damped"
    );
    assert_eq!(e.combined_refractory(0.8), 0.8, "a worse one gets through");
    for _ in 0..3 {
        assert!(
            e.combined_refractory(0.7) < 0.1,
            "damped after the new peak"
        );
    }
    assert_eq!(e.combined_refractory(0.7), 0.7, "the period is over");
}

/// Sparse counts (mostly 0, now and then 1 to 3) must not alarm on a 4, as MAD 0
/// alone would make it; a burst of 40 still does.
#[test]
fn sparse_counts_alarm_on_bursts_not_on_their_usual_ones() {
    let mut e = weighted(MethodWeights {
        context: 0.0,
        ..MethodWeights::default()
    });
    let t0 = 1_400_000_000;
    let mut r = super::super::noise(7);
    let mut worst = 0.0f64;
    for i in 0..3000 {
        let x = match (r() * 20.0) as u32 {
            0 => 3.0,
            1 | 2 => 2.0,
            3..=5 => 1.0,
            _ => 0.0,
        };
        let s = e.update(t0 + i * 300, x);
        if i > 1000 {
            worst = worst.max(s.value);
        }
    }
    let four = e.update(t0 + 3000 * 300, 4.0).value;
    assert!(worst.max(four) < 0.5, "usual ones {worst}, a 4 {four}");
    let burst = e.update(t0 + 3001 * 300, 40.0).value;
    assert!(burst > 0.5, "a burst of 40 scored {burst}");
}

/// A nightly job lifts a quiet host's CPU from about 0.07 to 1.5 at about 03:00, up
/// to 40 minutes earlier or later each night (as NAB's `ec2_cpu_utilization_c6585a`
/// does). Judged against its median, every night is a robust z of hundreds; once
/// three of the last seven nights went as high at about that hour, it is familiar
/// and no alarm. The same spike at noon is still news.
#[test]
fn a_nightly_job_is_familiar_but_not_at_noon() {
    let run = |damping: f64, noon_spike: bool| {
        let mut e = Ensemble::new(EnsembleConfig {
            familiar: FamiliarConfig {
                damping,
                ..FamiliarConfig::default()
            },
            ..EnsembleConfig::default()
        })
        .expect("valid");
        let mut r = super::super::noise(11);
        let jitter: [i64; 14] = [0, 35, -40, 10, 25, -15, 40, -30, 5, 20, -25, 15, -5, 30];
        let (mut nights, mut noon) = (0.0f64, 0.0f64);
        for i in 0..14 * 288 {
            let t = i * 300;
            let (day, minute) = (t / 86_400, t % 86_400 / 60);
            let night = (minute - 180 - jitter[day as usize]).abs() < 3;
            let midday = noon_spike && day == 13 && minute == 12 * 60;
            let x = if night || midday {
                1.5
            } else {
                0.066 + 0.01 * r()
            };
            let s = e.update(t, x).value;
            if night && day >= 4 {
                nights = nights.max(s);
            }
            if midday {
                noon = s;
            }
        }
        (nights, noon)
    };
    let (unfamiliar, _) = run(1.0, false);
    assert!(
        unfamiliar > 0.5,
        "without the check a night scores {unfamiliar}"
    );
    let (nights, noon) = run(0.0, true);
    assert!(nights < 0.5, "a familiar night scored {nights}");
    assert!(noon > 0.5, "the same spike at noon scored {noon}");
}

/// On a noisy gauge (uniform between 40 and 90 for two weeks), a 30 is 10 below
/// anything seen but well inside the noise for the baseline members (robust z ~2.4):
/// without the extreme member the ensemble scores it like any point; with it, it is
/// news, explained by the range it left. Normal points stay under 0.5 either way.
#[test]
fn a_noisy_gauge_below_anything_of_the_weeks_is_news() {
    let judged = |extreme: f64| {
        let mut e = weighted(MethodWeights {
            extreme,
            ..MethodWeights::default()
        });
        let mut r = super::super::noise(3);
        let t0 = 1_400_000_000;
        let n = 14 * 288;
        let mut normal = 0.0f64;
        for i in 0..n {
            let s = e.update(t0 + i * 300, 40.0 + 50.0 * r());
            if i > 8 * 288 {
                normal = normal.max(s.value);
            }
        }
        (normal, e.update(t0 + n * 300, 30.0))
    };
    let (normal, without) = judged(0.0);
    assert!(normal < 0.5 && without.value < 0.5, "{normal} {without:?}");
    let (normal, with) = judged(1.0);
    assert!(normal < 0.5, "{normal}");
    assert!(with.value > 0.9, "{with:?}");
    assert_eq!(with.method, "extreme");
    assert!(
        with.explanation()
            .contains("below the lowest of its window"),
        "{}",
        with.explanation()
    );
}

#[test]
fn the_moving_average_survives_a_resize() {
    // After the resize, the sum is that of the values kept.
    let e = fed(3600, 103);
    let (_, ring, sum) = e.smooth.as_ref().expect("smooth member");
    let kept: f64 = (0..ring.len()).filter_map(|b| ring.get_back(b)).sum();
    assert!((kept - sum).abs() < 1e-9, "{kept} vs {sum}");
}

/// When the moving-average member speaks, the explanation and the direction are
/// about the average it judged, not the raw point, which can sit on the other side
/// of the expected level (the demo once read "value 6.04e8 below expected 5.59e8").
#[test]
fn a_drift_is_explained_by_the_moving_average_that_saw_it() {
    let mut e = weighted(MethodWeights {
        robust: 0.0,
        seasonal: 0.0,
        spike: 0.0,
        context: 0.0,
        ..MethodWeights::default()
    });
    let t0 = 1_400_000_000;
    let mut r = super::super::noise(11);
    let mut drift = None;
    for i in 0..2000i64 {
        let ramp = (i - 1000).max(0) as f64 * 0.05;
        let s = e.update(t0 + i * 300, 100.0 + 10.0 * (r() - 0.5) + ramp);
        if i > 1000 && s.value > 0.5 {
            drift = Some(s);
            break;
        }
    }
    let s = drift.expect("the ramp is caught");
    assert_eq!((s.method, s.reason), ("smooth", Reason::AverageDeviation));
    let expected = s.expected.expect("an expected level");
    assert!(s.observed > expected && s.deviation > 0.0, "{s:?}");
    assert!(
        s.explanation().starts_with("moving average ")
            && s.explanation().contains(" above expected "),
        "{}",
        s.explanation()
    );
}

#[test]
fn members_the_gate_skips_learn_as_if_they_had_scored() {
    // Robust and spike only learn while the season gate is closed; once it opens
    // they must judge exactly as if they had scored every point.
    let mut r = super::super::noise(5);
    let xs: Vec<f64> = (0..3000)
        .map(|i| 50.0 + 10.0 * r() + (i / 700) as f64)
        .collect();
    let closed = |i: usize| (i / 250).is_multiple_of(2);
    let mut robust = [0, 1].map(|_| RobustDeviation::new(RobustConfig::default()).expect("valid"));
    let mut spike = [0, 1].map(|_| Spike::new(SpikeConfig::default()).expect("valid"));
    let mut judged = 0;
    for (i, &x) in xs.iter().enumerate() {
        let t = i as i64;
        let (r0, s0) = (robust[0].update(t, x), spike[0].update(t, x));
        if closed(i) {
            robust[1].learn(x);
            spike[1].learn(x);
            continue;
        }
        let (r1, s1) = (robust[1].update(t, x), spike[1].update(t, x));
        assert_eq!(r0, r1, "robust at {i}");
        assert_eq!(s0, s1, "spike at {i}");
        judged += usize::from(r0.reason == Reason::Deviation && s0.reason == Reason::Spike);
    }
    assert!(judged > 1000, "{judged} points judged after warm-up");
}
