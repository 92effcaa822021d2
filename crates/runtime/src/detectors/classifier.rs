//! Classifier detectors: the series of each feature joined per host, a window per
//! host, and the served model's prediction of a failure ahead.

use super::*;

/// One host's samples, its features joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// `k=v,…` of its labels.
    pub key: String,
    /// What identifies the host: its series' labels without `__name__`.
    pub labels: BTreeMap<String, String>,
    /// (unix seconds, sample), in time order: the timestamps where every feature
    /// has a finite value.
    pub samples: Vec<(i64, Sample)>,
}

/// Joins the series of each feature (by name, as in `features:`) into hosts: series
/// of one host share their labels but `__name__`; samples join on timestamps. A
/// host missing a feature is left out (it cannot be judged).
pub fn join_hosts(by_feature: &BTreeMap<String, Vec<Series>>) -> Vec<Host> {
    // Host key → its labels and the series of each feature.
    type Parts<'a> = (BTreeMap<String, String>, [Option<&'a Series>; 4]);
    let mut joined: BTreeMap<String, Parts> = BTreeMap::new();
    for (f, name) in FEATURE_METRICS.iter().enumerate() {
        for s in by_feature.get(*name).into_iter().flatten() {
            let mut labels = s.labels.clone();
            labels.remove("__name__");
            let entry = joined
                .entry(key(&labels))
                .or_insert_with(|| (labels, [None; 4]));
            entry.1[f].get_or_insert(s);
        }
    }
    let mut hosts = Vec::new();
    for (key, (labels, parts)) in joined {
        if parts.iter().any(Option::is_none) {
            continue;
        }
        let mut rows: BTreeMap<i64, [Option<f64>; 4]> = BTreeMap::new();
        for (f, s) in parts.iter().flatten().enumerate() {
            for &(t, x) in &s.points {
                if x.is_finite() {
                    rows.entry(t).or_insert([None; 4])[f] = Some(x);
                }
            }
        }
        let samples = rows
            .into_iter()
            .filter_map(|(t, row)| match row {
                [Some(a), Some(b), Some(c), Some(d)] => {
                    Some((t, Sample::from_metrics([a, b, c, d])))
                }
                _ => None,
            })
            .collect();
        hosts.push(Host {
            key,
            labels,
            samples,
        });
    }
    hosts
}

/// The usual spacing of a window's samples (seconds), at least 1.
pub(super) fn sample_step(window: &VecDeque<(i64, Sample)>) -> i64 {
    let mut gaps: Vec<i64> = window
        .iter()
        .zip(window.iter().skip(1))
        .map(|(a, b)| b.0 - a.0)
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(60).max(1)
}

/// `90` → "1m30s", `3600` → "1h0m": for summaries.
pub(super) fn human_secs(s: i64) -> String {
    match s {
        s if s >= 3_600 => format!("{}h{}m", s / 3_600, (s % 3_600) / 60),
        s if s >= 60 && s % 60 != 0 => format!("{}m{}s", s / 60, s % 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s}s"),
    }
}

/// A value with the digits that matter (ratios stay readable, percentages short).
pub(super) fn short(v: f64) -> String {
    if v.abs() < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

impl DetectorRun {
    /// Feeds a classifier run: the series of each feature (by name, as in
    /// `features:`). Series of one host are joined on their labels (without
    /// `__name__`) and their samples on timestamps; each new timestamp where every
    /// feature has a value extends the host's window, and once the window is full the
    /// model predicts. A host alerts on its most confident predicted failure.
    pub fn observe_features(
        &mut self,
        served: &ServedModel,
        by_feature: &BTreeMap<String, Vec<Series>>,
    ) -> Vec<Detection> {
        let Some(spec) = self.detector.model.classifier().cloned() else {
            return Vec::new();
        };
        let min_confidence = spec.min_confidence.unwrap_or(served.model.min_confidence);
        join_hosts(by_feature)
            .into_iter()
            .filter_map(|h| self.observe_host(h, served, min_confidence))
            .collect()
    }

    pub(super) fn observe_host(
        &mut self,
        joined: Host,
        served: &ServedModel,
        min_confidence: f64,
    ) -> Option<Detection> {
        let k = joined.key.as_str();
        if !self.hosts.contains_key(k) {
            if self.hosts.len() >= MAX_SERIES {
                tracing::warn!(detector = %self.detector.name, host = %k, "too many hosts; not tracking this one");
                return None;
            }
            self.hosts.insert(k.to_string(), HostState::default());
        }
        let host = self.hosts.get_mut(k)?;
        let window = served.model.extractor.window;
        let (mut xs, mut ts) = (Vec::new(), Vec::new());
        for (t, sample) in joined.samples {
            if host.last_t.is_some_and(|last| t <= last) {
                continue; // seen in an earlier run
            }
            host.window.push_back((t, sample));
            while host.window.len() > window {
                host.window.pop_front();
            }
            host.last_t = Some(t);
            if host.window.len() < window || self.alert_from.is_some_and(|from| t < from) {
                continue; // filling the window, or history: nothing to predict on
            }
            let samples: Vec<Sample> = host.window.iter().map(|(_, s)| *s).collect();
            if let Ok(x) = served.model.extractor.extract(&samples) {
                xs.push(x);
                ts.push(t);
            }
        }
        if xs.is_empty() {
            return None;
        }
        let step = sample_step(&host.window);
        let predictions = served.model.predict_batch(&xs);
        let mut worst: Option<(usize, f64)> = None;
        let mut quiet_tail = 0u32;
        for (i, p) in predictions.iter().enumerate() {
            if p.failure && p.probability >= min_confidence {
                quiet_tail = 0;
                if worst.is_none_or(|(_, w)| p.probability > w) {
                    worst = Some((i, p.probability));
                }
            } else {
                quiet_tail += 1;
            }
        }
        let series = Series {
            labels: joined.labels,
            points: Vec::new(),
        };
        let last_t = *ts.last()?;
        let Some((i, probability)) = worst else {
            return self.quiet(k, quiet_tail, &series, last_t);
        };
        self.firing.insert(k.to_string(), quiet_tail);
        let ahead = step * served.model.horizon as i64;
        let x = &xs[i];
        let mut notes = BTreeMap::new();
        notes.insert(
            "summary".to_string(),
            format!(
                "{} on {k}: failure predicted within {} ({:.0}% confidence)",
                self.detector.alert.name,
                human_secs(ahead),
                100.0 * probability
            ),
        );
        // Each feature's last value and its trend per sample over the window: what
        // the operator checks first.
        let names = vigil_detect::classifier::FeatureExtractor::names();
        let stats = names.len() / FEATURE_METRICS.len();
        let signs: Vec<String> = FEATURE_METRICS
            .iter()
            .enumerate()
            .map(|(m, name)| {
                let (last, slope) = (x[m * stats], x[m * stats + stats - 1]);
                format!("{name} {} ({:+.3}/sample)", short(last), slope)
            })
            .collect();
        notes.insert(
            "description".to_string(),
            format!(
                "{} predicts a failure within {} samples: {}",
                served.id,
                served.model.horizon,
                signs.join(", ")
            ),
        );
        notes.insert("confidence".to_string(), format!("{probability:.3}"));
        notes.insert("model".to_string(), served.id.clone());
        notes.insert("lead_seconds".to_string(), ahead.to_string());
        Some(self.detection(&series, probability, probability, ts[i], notes))
    }
}
