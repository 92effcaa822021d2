//! Forecast accuracy on generated series with known trend, seasonality and noise, and
//! time to exhaustion landing inside its interval.

use proptest::prelude::*;
use vigil_detect::forecast::{ForecastConfig, Forecaster, backtest};

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Hourly series: level + slope per hour + daily cycle + uniform noise, deterministic.
fn generated(
    hours: usize,
    level: f64,
    slope: f64,
    amplitude: f64,
    noise: f64,
    seed: u64,
) -> Vec<(i64, f64)> {
    let mut s = seed | 1;
    (0..hours)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let daily = amplitude * (i as f64 * std::f64::consts::TAU / 24.0).sin();
            (
                1_700_000_000 + i as i64 * HOUR,
                level + slope * i as f64 + daily + noise * u,
            )
        })
        .collect()
}

#[test]
fn backtest_accuracy_per_horizon_meets_bounds() {
    // Six months of hourly disk usage: 40% + 0.01%/h, daily swing ±5, noise ±1.
    let pts = generated(24 * 180, 40.0, 0.01, 5.0, 2.0, 1);
    let horizons = [HOUR, 6 * HOUR, 24 * HOUR, 7 * DAY, 30 * DAY, 60 * DAY];
    let report =
        backtest(&pts, &ForecastConfig::default(), &horizons, 24 * 21, 12).expect("long enough");
    println!("{report}");
    for h in &report.horizons {
        assert!(h.forecasts >= 10, "{h:?}");
        assert!(h.within_10 >= 0.9, "horizon {}: {h:?}", h.horizon_secs);
        assert!(h.within_20 >= 0.99, "horizon {}: {h:?}", h.horizon_secs);
        assert!(
            h.coverage >= 0.6 && h.coverage <= 1.0,
            "80% interval covered {h:?}"
        );
    }
    let three_months = backtest(
        &generated(24 * 200, 40.0, 0.01, 5.0, 2.0, 2),
        &ForecastConfig::default(),
        &[90 * DAY],
        24 * 60,
        8,
    )
    .expect("long enough");
    assert!(three_months.horizons[0].within_15 >= 0.9, "{three_months}");
}

#[test]
fn finds_the_daily_period_and_the_trend() {
    let pts = generated(24 * 30, 100.0, 0.05, 10.0, 1.0, 3);
    let m = Forecaster::fit(&pts, &ForecastConfig::default()).expect("fits");
    assert_eq!(m.period(), Some(24));
    assert!((m.slope - 0.05).abs() < 0.005, "slope {}", m.slope);
    assert!(
        m.summary().contains("seasonal period 1 d"),
        "{}",
        m.summary()
    );
}

#[test]
fn time_to_exhaustion_lands_in_its_interval() {
    // Disk at 60%, growing 0.05%/h with a daily swing: the true crossing of 90% is known.
    for seed in 1..=5 {
        let pts = generated(24 * 14, 60.0, 0.05, 2.0, 1.0, seed);
        let m = Forecaster::fit(&pts, &ForecastConfig::default()).expect("fits");
        let e = m.time_to_exhaustion(90.0, 0.8);
        let truth = generated(24 * 14 + 24 * 60, 60.0, 0.05, 2.0, 0.0, seed)
            .into_iter()
            .skip(24 * 14)
            .find(|p| p.1 >= 90.0)
            .map(|p| p.0 - pts[pts.len() - 1].0)
            .expect("crosses");
        let (lo, hi) = (
            e.earliest_secs.expect("earliest"),
            e.latest_secs.expect("latest"),
        );
        assert!(
            lo <= truth && truth <= hi,
            "seed {seed}: truth {truth}s not in {e}"
        );
        let eta = e.eta_secs.expect("eta");
        assert!(
            (eta - truth).abs() <= DAY,
            "seed {seed}: eta {eta} vs {truth}"
        );
        let text = e.to_string();
        assert!(
            text.contains("reached in") && text.contains("80% interval"),
            "{text}"
        );
    }
}

#[test]
fn flat_or_falling_series_is_never_exhausted_upwards() {
    let pts = generated(24 * 14, 60.0, -0.01, 2.0, 1.0, 9);
    let m = Forecaster::fit(&pts, &ForecastConfig::default()).expect("fits");
    let e = m.time_to_exhaustion(95.0, 0.8);
    assert_eq!(e.eta_secs, None, "{e}");
    assert!(e.to_string().contains("not"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Fit never panics: bad input gives an error, good input finite forecasts.
    #[test]
    fn fit_never_panics(values in prop::collection::vec(prop_oneof![9 => -1e9..1e9f64, 1 => Just(f64::NAN), 1 => Just(1e300)], 0..300),
                        step in 1i64..100_000, shuffle in any::<bool>()) {
        let mut pts: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * step, *v)).collect();
        if shuffle && pts.len() > 2 {
            pts.swap(0, 1);
        }
        if let Ok(m) = Forecaster::fit(&pts, &ForecastConfig::default()) {
            let p = m.at(step * 10);
            prop_assert!(!p.value.is_nan());
            let _ = m.time_to_exhaustion(1e6, 0.8).to_string();
        }
    }
}
