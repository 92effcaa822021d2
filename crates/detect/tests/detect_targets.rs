//! The seeds' detection targets, measured on critical anomalies: a true-positive rate
//! above 95% with under 5% false positives, each detection within 5 minutes of the onset.
//!
//! NAB (`make nab`, docs/research/nab.md) measures the ensemble on real series whose labelled windows
//! include subtle anomalies, and times detections against a window's centre. Here the
//! onset is known exactly, because the series are generated: several kinds of normal
//! behaviour an operator sees (a steady gauge, a daily cycle, request counts, steady
//! growth), at 1- and 5-minute sampling, each given one anomaly of a kind that pages
//! someone (an outage, a surge, a spike, a level shift of ten noise deviations). Every
//! series kind meets every anomaly kind, so a new kind is one more enum variant.
//!
//! What counts, for the default ensemble at a threshold:
//! - **detected**: a score at or above the threshold at a point in
//!   `[onset, onset + 5 min]`;
//! - **false positive**: a point at or above the threshold before the onset, once the
//!   detector has had a day to learn (NAB likewise leaves a probation unscored); the
//!   rate is over every such point;
//! - **delay**: from the onset to the first detection.
//!
//! Three days of history leave the range breach's four-week window unfilled and the
//! extreme member's week of warm-up unmet, so a second test scores five weeks of each
//! normal behaviour (steady growth, forever making new highs, among them) and counts its
//! alarms.
//!
//! Measured 2026-12-06 (`cargo test --test detect_targets -- --nocapture` prints the
//! table), 256 cases: at 0.5 (the ensemble's operating point and a detector's default
//! for it; NAB's optimised threshold is 0.5125) TPR 100% with 0.018% false positives,
//! 255 of the 256 detections at the onset itself; at 0.8 (stricter: a single method's
//! default) TPR 95.7% with none. Seeds 100–107, 200–207 and 300–307, not used to choose
//! the range-breach member's parameters, gave 98.8%, 98.0% and 99.2% at 0.5, and 95.7%,
//! 94.1% and 92.6% at 0.8. Before that member, the NAB-tuned record and refractory let
//! 16% of these through at 0.5 (docs/research/nab.md): an outage of a steady gauge 20 noise
//! deviations deep scored like a blip next to a week's record.

use vigil_detect::anomaly::ModelConfig;

/// The ensemble's operating point, and what a detector using it alerts at when its YAML
/// names no threshold (NAB's optimised threshold is 0.5125).
const OPERATING: f64 = 0.5;
/// A stricter threshold (a single method's default), for an operator who wants fewer
/// pages.
const STRICT: f64 = 0.8;
/// "Within 5 minutes of onset".
const MAX_DELAY_S: i64 = 300;
/// History before the anomaly: three days, the first of them unscored (learning).
const HISTORY_S: i64 = 3 * 86_400;
const LEARNING_S: i64 = 86_400;
/// Seeds per (series, anomaly) case.
const SEEDS: u64 = 8;

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Self {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// Poisson with mean `lambda` (normal approximation above 30).
    fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0);
        }
        let (limit, mut k, mut p) = ((-lambda).exp(), 0.0, 1.0);
        loop {
            p *= self.uniform();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

/// Normal behaviour: the series' value at time `t` (seconds from its start).
#[derive(Debug, Clone, Copy)]
enum Normal {
    /// A gauge holding its level with noise (CPU of a steady service): 40 ± 2.
    Gauge,
    /// A daily cycle with noise (traffic-driven CPU): 50 ± 20 over the day, noise 3.
    Daily,
    /// Request counts per interval with a daily cycle (Poisson).
    Counts,
    /// Disk usage growing steadily with a little noise.
    Growth,
}

impl Normal {
    /// The noise-free level at `t` seconds from the start.
    fn level(self, t: i64, interval: i64) -> f64 {
        let day = std::f64::consts::TAU * t as f64 / 86_400.0;
        match self {
            Normal::Gauge => 40.0,
            Normal::Daily => 50.0 + 20.0 * day.sin(),
            // 200 requests a minute at the daily peak, 40 at night.
            Normal::Counts => (120.0 + 80.0 * day.sin()) * interval as f64 / 60.0,
            Normal::Growth => 30.0 + 10.0 * t as f64 / 86_400.0,
        }
    }

    /// The noise's standard deviation around `level`.
    fn sigma(self, level: f64) -> f64 {
        match self {
            Normal::Gauge => 2.0,
            Normal::Daily => 3.0,
            Normal::Counts => level.sqrt(),
            Normal::Growth => 0.3,
        }
    }

    fn value(self, level: f64, noise: &mut Noise) -> f64 {
        match self {
            Normal::Counts => noise.poisson(level),
            _ => level + self.sigma(level) * noise.normal(),
        }
    }
}

/// An anomaly that pages someone, starting at the onset.
#[derive(Debug, Clone, Copy)]
enum Critical {
    /// The value drops to zero and stays there (the service or its exporter is down).
    Outage,
    /// The value jumps to four times its level and stays (a runaway process, a surge).
    Surge,
    /// One point at six times the level (an error burst, a GC storm).
    Spike,
    /// The level moves by ten noise deviations and stays (a slow dependency, a leak
    /// that jumped): within the daily range of a cycling series, not beyond it.
    Shift,
}

impl Critical {
    /// The anomalous value `since` seconds after the onset.
    fn apply(self, normal: Normal, x: f64, level: f64, since: i64) -> f64 {
        match self {
            Critical::Outage => 0.0,
            Critical::Surge => x + 3.0 * level,
            Critical::Spike if since == 0 => x + 5.0 * level,
            Critical::Spike => x,
            Critical::Shift => x + 10.0 * normal.sigma(level),
        }
    }
}

/// One generated series: its points and the anomaly's onset (unix seconds).
fn generate(
    normal: Normal,
    critical: Critical,
    interval: i64,
    seed: u64,
) -> (Vec<(i64, f64)>, i64) {
    let start = 1_700_000_000;
    let mut noise = Noise::new(seed);
    // The onset falls at a seeded time of day in the fourth day.
    let onset =
        start + HISTORY_S + (noise.uniform() * 86_400.0 / interval as f64) as i64 * interval;
    // Only the first 5 minutes after the onset are judged.
    let end = onset + 2 * MAX_DELAY_S;
    let mut points = Vec::new();
    let mut t = start;
    while t < end {
        let level = normal.level(t - start, interval);
        let x = normal.value(level, &mut noise);
        let x = if t >= onset {
            critical.apply(normal, x, level, t - onset)
        } else {
            x
        };
        points.push((t, x));
        t += interval;
    }
    (points, onset)
}

#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    /// One per detected case: how long after the onset it was first detected.
    delays: Vec<i64>,
    normal_points: usize,
    false_positives: usize,
}

impl Tally {
    fn tpr(&self) -> f64 {
        self.delays.len() as f64 / self.cases.max(1) as f64
    }
    fn fpr(&self) -> f64 {
        self.false_positives as f64 / self.normal_points.max(1) as f64
    }
    fn add(&mut self, other: &Tally) {
        self.cases += other.cases;
        self.delays.extend(&other.delays);
        self.normal_points += other.normal_points;
        self.false_positives += other.false_positives;
    }
}

/// One series' scores `(t, score)` judged against its onset at `threshold`.
fn evaluate(scores: &[(i64, f64)], onset: i64, threshold: f64) -> Tally {
    let start = scores[0].0;
    let mut tally = Tally {
        cases: 1,
        ..Tally::default()
    };
    for &(t, score) in scores {
        let alarm = score >= threshold;
        if t < onset {
            if t - start >= LEARNING_S {
                tally.normal_points += 1;
                tally.false_positives += usize::from(alarm);
            }
        } else if t - onset <= MAX_DELAY_S && alarm && tally.delays.is_empty() {
            tally.delays.push(t - onset);
        }
    }
    tally
}

/// The default ensemble's scores of one series.
fn ensemble_scores(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut method = ModelConfig::by_name("ensemble")
        .and_then(|c| c.build())
        .expect("the default ensemble is valid");
    points
        .iter()
        .map(|&(t, x)| (t, method.update(t, x).value))
        .collect()
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

#[test]
fn critical_anomalies_are_caught_within_five_minutes_with_few_false_positives() {
    let normals = [Normal::Gauge, Normal::Daily, Normal::Counts, Normal::Growth];
    let criticals = [
        Critical::Outage,
        Critical::Surge,
        Critical::Spike,
        Critical::Shift,
    ];
    let thresholds = [OPERATING, STRICT];
    let mut totals: [Tally; 2] = Default::default();
    let mut report = format!(
        "series   anomaly  interval  cases  TPR at {OPERATING} (FPR)  TPR at {STRICT} (FPR)\n"
    );
    for normal in normals {
        for critical in criticals {
            for interval in [60, 300] {
                let mut cases: [Tally; 2] = Default::default();
                for seed in 0..SEEDS {
                    let (points, onset) = generate(normal, critical, interval, seed);
                    let scores = ensemble_scores(&points);
                    for (case, threshold) in cases.iter_mut().zip(thresholds) {
                        case.add(&evaluate(&scores, onset, threshold));
                    }
                }
                report += &format!(
                    "{:8} {:8} {:>6} s  {:5}  {:>6} ({:.2}%)  {:>6} ({:.2}%)\n",
                    format!("{normal:?}"),
                    format!("{critical:?}"),
                    interval,
                    cases[0].cases,
                    percent(cases[0].tpr()),
                    100.0 * cases[0].fpr(),
                    percent(cases[1].tpr()),
                    100.0 * cases[1].fpr(),
                );
                for (total, case) in totals.iter_mut().zip(&cases) {
                    total.add(case);
                }
            }
        }
    }
    for (total, threshold) in totals.iter().zip(thresholds) {
        report += &format!(
            "at {threshold}: {} cases, TPR {}, FPR {:.3}% of {} normal points, \
             {} detections at the onset, the latest {:?} s after it\n",
            total.cases,
            percent(total.tpr()),
            100.0 * total.fpr(),
            total.normal_points,
            total.delays.iter().filter(|&&d| d == 0).count(),
            total.delays.iter().max(),
        );
    }
    println!("{report}");
    // The seeds' target (TPR above 95%, under 5% false positives) at the operating
    // point; at the stricter threshold, near its measured level (fresh seeds read
    // 92.6–95.7%). False positives are held far below 5%, at the measured level.
    for ((total, threshold), min_tpr) in totals.iter().zip(thresholds).zip([0.95, 0.9]) {
        assert!(total.tpr() > min_tpr, "TPR at {threshold} fell:\n{report}");
        assert!(total.fpr() < 0.001, "FPR at {threshold} rose:\n{report}");
    }
}

/// Weeks of normal behaviour: the false positives a detector raises in steady service,
/// once the range breach's four-week window has filled (the test above gives each series
/// three days). Measured 2026-12-06: 5 weeks of each kind at 1- and 5-minute sampling,
/// 235,008 points after the first day: 10 alarms at 0.5 (0.0043%), none at 0.8.
#[test]
fn weeks_of_normal_behaviour_raise_few_alarms() {
    const WEEKS_S: i64 = 35 * 86_400;
    let start = 1_700_000_000;
    let mut report = String::from("series   interval  points  at 0.5  at 0.8\n");
    let (mut points_total, mut alarms) = (0usize, [0usize; 2]);
    for normal in [Normal::Gauge, Normal::Daily, Normal::Counts, Normal::Growth] {
        for interval in [60, 300] {
            let mut noise = Noise::new(1_000);
            let points: Vec<(i64, f64)> = (0..WEEKS_S / interval)
                .map(|i| {
                    let level = normal.level(i * interval, interval);
                    (start + i * interval, normal.value(level, &mut noise))
                })
                .collect();
            let scored: Vec<f64> = ensemble_scores(&points)
                .into_iter()
                .filter(|&(t, _)| t - start >= LEARNING_S)
                .map(|(_, score)| score)
                .collect();
            let at = |threshold| scored.iter().filter(|&&s| s >= threshold).count();
            report += &format!(
                "{:8} {:>6} s  {:6}  {:6}  {:6}\n",
                format!("{normal:?}"),
                interval,
                scored.len(),
                at(OPERATING),
                at(STRICT),
            );
            points_total += scored.len();
            alarms[0] += at(OPERATING);
            alarms[1] += at(STRICT);
        }
    }
    let rate = |n: usize| 100.0 * n as f64 / points_total as f64;
    report += &format!(
        "{points_total} points: {:.4}% at {OPERATING}, {:.4}% at {STRICT}\n",
        rate(alarms[0]),
        rate(alarms[1])
    );
    println!("{report}");
    // Far under the seeds' 5%, held near the measured level.
    assert!(rate(alarms[0]) < 0.05, "{report}");
    assert_eq!(alarms[1], 0, "{report}");
}
