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

use super::detectors::Detection;
use serde::Serialize;
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

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
