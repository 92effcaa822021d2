//! Scoring what detectors predicted against what happened.
//!
//! Predictions are the detections the daemon stored (firing and resolved). What
//! happened comes from the detector's source: connectors report labelled events
//! (`anomaly=<kind>`) next to their series — the `sim` plugin its injected anomalies,
//! a `file` source its labelled rows. Pure: no I/O, so it is tested on its own.
//!
//! - An **episode** is a run of firing detections of one series, until it resolves.
//! - A labelled anomaly is **detected** when an episode of its series is open at some
//!   moment in `[onset, onset + window]`; its **delay** is how long after the onset the
//!   episode began (zero if it was already open).
//! - **Precision** is the share of episodes that overlap some anomaly's window;
//!   **recall** the share of anomalies detected.

use super::detectors::{Detection, ForecastRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One thing that happened, as the source labelled it.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub at_ms: i64,
    /// The series' labels (the event's labels without `anomaly`).
    pub labels: BTreeMap<String, String>,
    pub kind: String,
}

impl Truth {
    /// From a connector event; `None` unless it is labelled as an anomaly (a
    /// `recovery` is the end of one, not an anomaly of its own).
    pub fn from_event(at_ms: i64, labels: &BTreeMap<String, String>) -> Option<Truth> {
        let kind = labels.get("anomaly")?;
        if kind == "recovery" {
            return None;
        }
        let mut labels = labels.clone();
        labels.remove("anomaly");
        Some(Truth {
            at_ms,
            labels,
            kind: kind.clone(),
        })
    }

    /// Whether a detection is about this truth's series: every series label agrees.
    fn matches(&self, d: &Detection) -> bool {
        self.labels.iter().all(|(k, v)| d.labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub detector: String,
    /// Anomalies whose window has closed (caught or missed).
    pub anomalies: usize,
    /// Anomalies not caught yet whose window is still open.
    pub pending: usize,
    pub detected: usize,
    pub episodes: usize,
    pub true_episodes: usize,
    /// `None` when there is nothing to divide by.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Delays of the detected anomalies (ms), in the order of the anomalies.
    pub delays_ms: Vec<i64>,
    pub median_delay_ms: Option<i64>,
    /// Labelled anomalies no episode caught: (onset ms, kind, series).
    pub missed: Vec<(i64, String, String)>,
    /// Forecast detectors: how close their forecasts came, per horizon.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forecasts: Vec<ForecastAccuracy>,
    /// Failure predictions: how long before each predicted failure the alert came
    /// (ms), and the median.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leads_ms: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_lead_ms: Option<i64>,
    /// Failures that did not come because a verified remediation averted them
    /// (counted among the anomalies; no lead time, as they never happened).
    #[serde(skip_serializing_if = "is_zero")]
    pub averted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The kind of a failure a verified remediation averted.
pub const AVERTED: &str = "failure (averted)";

/// How forecasts made `horizon_secs` ahead compared with what was then observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastAccuracy {
    pub horizon_secs: i64,
    /// Forecasts whose time has come and for which a value was observed.
    pub scored: usize,
    /// Shares within 10 %, 15 % and 20 % of the observed value.
    pub within_10: f64,
    pub within_15: f64,
    pub within_20: f64,
    /// Share of observed values inside the forecast interval.
    pub coverage: f64,
    pub mean_abs_pct_error: f64,
}

/// Scores forecasts against observations: `observed(labels, t)` gives the value
/// the series had at `t` (unix seconds), if known.
pub fn forecast_accuracy(
    forecasts: &[ForecastRecord],
    observed: impl Fn(&BTreeMap<String, String>, i64) -> Option<f64>,
) -> Vec<ForecastAccuracy> {
    let mut by_horizon: BTreeMap<i64, Vec<(f64, &ForecastRecord)>> = BTreeMap::new();
    for f in forecasts {
        if let Some(actual) = observed(&f.labels, f.t) {
            by_horizon
                .entry(f.horizon_secs)
                .or_default()
                .push((actual, f));
        }
    }
    by_horizon
        .into_iter()
        .map(|(horizon_secs, rows)| {
            let n = rows.len() as f64;
            let err = |(a, f): &(f64, &ForecastRecord)| {
                if *a == 0.0 {
                    if f.value == 0.0 { 0.0 } else { f64::INFINITY }
                } else {
                    ((f.value - a) / a).abs()
                }
            };
            let share = |m: f64| rows.iter().filter(|r| err(r) <= m).count() as f64 / n;
            let finite: Vec<f64> = rows.iter().map(err).filter(|e| e.is_finite()).collect();
            ForecastAccuracy {
                horizon_secs,
                scored: rows.len(),
                within_10: share(0.10),
                within_15: share(0.15),
                within_20: share(0.20),
                coverage: rows
                    .iter()
                    .filter(|(a, f)| *a >= f.low && *a <= f.high)
                    .count() as f64
                    / n,
                mean_abs_pct_error: if finite.is_empty() {
                    0.0
                } else {
                    100.0 * finite.iter().sum::<f64>() / finite.len() as f64
                },
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Episode {
    start_ms: i64,
    end_ms: Option<i64>,
    sample: Detection,
}

fn series_key(d: &Detection) -> String {
    let mut labels = d.labels.clone();
    for k in ["alertname", "severity", "detector"] {
        labels.remove(k);
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn episodes(predictions: &[Detection]) -> Vec<Episode> {
    let mut sorted: Vec<&Detection> = predictions.iter().collect();
    sorted.sort_by_key(|d| d.at);
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<Episode> = Vec::new();
    for d in sorted {
        let key = series_key(d);
        let at_ms = d.at.saturating_mul(1000);
        match (d.resolved, open.get(&key)) {
            (false, None) => {
                open.insert(key, out.len());
                out.push(Episode {
                    start_ms: at_ms,
                    end_ms: None,
                    sample: d.clone(),
                });
            }
            (true, Some(&i)) => {
                out[i].end_ms = Some(at_ms);
                open.remove(&key);
            }
            _ => {}
        }
    }
    out
}

/// Scores one detector's predictions against the anomalies of its source, as of
/// `until_ms`: an anomaly not caught yet whose window is still open is pending, not
/// missed.
pub fn evaluate(
    detector: &str,
    predictions: &[Detection],
    truths: &[Truth],
    window_ms: i64,
    until_ms: i64,
) -> Evaluation {
    let eps = episodes(predictions);
    let mut true_episode = vec![false; eps.len()];
    let mut delays = Vec::new();
    let mut missed = Vec::new();
    let mut detected = 0;
    let mut pending = 0;
    for t in truths {
        let (from, to) = (t.at_ms, t.at_ms + window_ms);
        let mut best: Option<i64> = None;
        for (i, e) in eps.iter().enumerate() {
            let open_in_window = e.start_ms <= to && e.end_ms.is_none_or(|end| end >= from);
            if open_in_window && t.matches(&e.sample) {
                true_episode[i] = true;
                let delay = (e.start_ms - t.at_ms).max(0);
                best = Some(best.map_or(delay, |b: i64| b.min(delay)));
            }
        }
        match best {
            Some(d) => {
                detected += 1;
                delays.push(d);
            }
            None if t.at_ms + window_ms > until_ms => pending += 1,
            None => missed.push((
                t.at_ms,
                t.kind.clone(),
                t.labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "__name__")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )),
        }
    }
    let true_episodes = true_episode.iter().filter(|x| **x).count();
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let mut sorted = delays.clone();
    sorted.sort_unstable();
    Evaluation {
        detector: detector.to_string(),
        anomalies: truths.len() - pending,
        pending,
        detected,
        episodes: eps.len(),
        true_episodes,
        precision: ratio(true_episodes, eps.len()),
        recall: ratio(detected, truths.len() - pending),
        median_delay_ms: sorted.get(sorted.len() / 2).copied(),
        delays_ms: delays,
        missed,
        forecasts: Vec::new(),
        leads_ms: Vec::new(),
        median_lead_ms: None,
        averted: 0,
    }
}

/// Scores failure predictions: a failure counts as predicted when an episode of its
/// host was open at some moment of the `ahead_ms` before it; its lead time is how
/// long before the failure the episode began (at most `ahead_ms`). `failures` are
/// the ones that happened and the ones a verified remediation averted.
pub fn evaluate_predictions(
    detector: &str,
    predictions: &[Detection],
    failures: &[Truth],
    ahead_ms: i64,
    until_ms: i64,
) -> Evaluation {
    // The same matching as for anomalies, on a window that ends at the failure.
    let shifted: Vec<Truth> = failures
        .iter()
        .map(|t| Truth {
            at_ms: t.at_ms - ahead_ms,
            ..t.clone()
        })
        .collect();
    let mut e = evaluate(detector, predictions, &shifted, ahead_ms, until_ms);
    for m in &mut e.missed {
        m.0 += ahead_ms;
    }
    // Lead times only of failures that came: an averted one has no time of its own.
    let happened: Vec<Truth> = shifted
        .iter()
        .filter(|t| t.kind != AVERTED)
        .cloned()
        .collect();
    e.averted = shifted.len() - happened.len();
    e.leads_ms = evaluate(detector, predictions, &happened, ahead_ms, until_ms)
        .delays_ms
        .iter()
        .map(|d| ahead_ms - d)
        .collect();
    e.delays_ms.clear();
    e.median_delay_ms = None;
    let mut sorted = e.leads_ms.clone();
    sorted.sort_unstable();
    e.median_lead_ms = sorted.get(sorted.len() / 2).copied();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_predictions_score_by_lead_time() {
        let minute = 60_000;
        let failure = |at_min: i64, service: &str| Truth {
            at_ms: at_min * minute,
            labels: BTreeMap::from([("service".to_string(), service.to_string())]),
            kind: "failure".into(),
        };
        // db: predicted 8 min ahead; api: its alert came after the failure (missed);
        // web: an alarm with no failure after it (false).
        let predictions = vec![
            det("db", 92 * 60, false),
            det("db", 97 * 60, true),
            det("api", 203 * 60, false),
            det("api", 210 * 60, true),
            det("web", 300 * 60, false),
            det("web", 305 * 60, true),
        ];
        let averted = Truth {
            kind: AVERTED.into(),
            ..failure(501, "cache")
        };
        let mut predictions = predictions;
        predictions.push(det("cache", 500 * 60, false));
        predictions.push(det("cache", 502 * 60, true));
        let e = evaluate_predictions(
            "d",
            &predictions,
            &[failure(100, "db"), failure(200, "api"), averted],
            10 * minute,
            600 * minute,
        );
        assert_eq!((e.detected, e.anomalies, e.averted), (2, 3, 1));
        assert_eq!((e.true_episodes, e.episodes), (2, 4));
        assert_eq!(e.leads_ms, vec![8 * minute]);
        assert_eq!(e.median_lead_ms, Some(8 * minute));
        assert_eq!(e.missed.len(), 1);
        assert_eq!(
            e.missed[0].0,
            200 * minute,
            "reported at the failure's time"
        );
    }

    fn det(service: &str, at_s: i64, resolved: bool) -> Detection {
        Detection {
            detector: "d".into(),
            alertname: "A".into(),
            severity: "warning".into(),
            labels: BTreeMap::from([
                ("alertname".into(), "A".into()),
                ("service".into(), service.into()),
                ("__name__".into(), "m".into()),
            ]),
            annotations: BTreeMap::new(),
            score: 0.9,
            value: 1.0,
            at: at_s,
            resolved,
        }
    }

    fn truth(service: &str, at_s: i64) -> Truth {
        Truth::from_event(
            at_s * 1000,
            &BTreeMap::from([
                ("service".into(), service.into()),
                ("__name__".into(), "m".into()),
                ("anomaly".into(), "level_shift".into()),
            ]),
        )
        .expect("an anomaly")
    }

    #[test]
    fn scores_episodes_against_labelled_anomalies() {
        let predictions = vec![
            det("db", 130, false), // 2 min after db's onset at 10 s … caught
            det("db", 190, false), // same episode
            det("db", 400, true),
            det("api", 5_000, false), // nothing happened to api then: a false alarm
        ];
        let truths = vec![truth("db", 10), truth("web", 50)];
        let e = evaluate("d", &predictions, &truths, 3_600_000, 10_000_000);
        assert_eq!(
            (e.anomalies, e.detected, e.episodes, e.true_episodes),
            (2, 1, 2, 1)
        );
        assert_eq!(e.precision, Some(0.5));
        assert_eq!(e.recall, Some(0.5));
        assert_eq!(e.delays_ms, vec![120_000]);
        assert_eq!(e.missed.len(), 1);
        assert!(e.missed[0].2.contains("service=web"));
    }

    #[test]
    fn forecasts_are_scored_per_horizon() {
        let f = |h: i64, t: i64, value: f64| ForecastRecord {
            detector: "disk".into(),
            labels: BTreeMap::new(),
            made_at: 0,
            horizon_secs: h,
            t,
            value,
            low: value * 0.9,
            high: value * 1.1,
        };
        // The series is 100 everywhere; the 1 h forecasts are 5 % and 30 % off.
        let records = vec![
            f(3600, 3600, 105.0),
            f(3600, 7200, 130.0),
            f(86_400, 99_999_999, 1.0),
        ];
        let acc = forecast_accuracy(&records, |_, t| (t < 1_000_000).then_some(100.0));
        assert_eq!(acc.len(), 1, "the 1-day forecast's time has not come");
        let a = &acc[0];
        assert_eq!((a.horizon_secs, a.scored), (3600, 2));
        assert_eq!((a.within_10, a.within_20, a.coverage), (0.5, 0.5, 0.5));
        assert!((a.mean_abs_pct_error - 17.5).abs() < 1e-9);
    }

    #[test]
    fn recoveries_are_not_anomalies_and_empty_input_divides_by_nothing() {
        let l = BTreeMap::from([("anomaly".to_string(), "recovery".to_string())]);
        assert!(Truth::from_event(0, &l).is_none());
        let e = evaluate("d", &[], &[], 1000, 0);
        assert_eq!(
            (e.precision, e.recall, e.median_delay_ms),
            (None, None, None)
        );
        // Not caught yet, but its window is still open: pending, not missed.
        let e = evaluate("d", &[], &[truth("db", 10)], 3_600_000, 20_000);
        assert_eq!((e.anomalies, e.pending, e.missed.len()), (0, 1, 0));
    }
}
