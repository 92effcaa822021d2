//! Similar past incidents: the most recent resolved ones, scored by shared tokens.

use super::*;

pub(super) const MAX_PAST_FOR_SIMILARITY: usize = 500;

/// How much past incident `p` is like one with `tokens`, when enough (≥ 0.3).
pub(super) fn similarity(tokens: &HashSet<String>, p: &Incident) -> Option<Similar> {
    let other = incident_tokens(p);
    let inter = tokens.intersection(&other).count();
    let union = tokens.union(&other).count();
    let score = if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    };
    (score >= 0.3).then(|| Similar {
        id: p.id.clone(),
        score: (score * 100.0).round() / 100.0,
        title: p.title.clone(),
        runbooks: p.executions.iter().map(|e| e.runbook.clone()).collect(),
    })
}

pub(super) fn incident_tokens(inc: &Incident) -> HashSet<String> {
    let mut t = HashSet::new();
    for m in &inc.alerts {
        t.insert(format!("alertname={}", m.alertname));
        if let Some(s) = &m.service {
            t.insert(format!("service={s}"));
        }
    }
    t
}

impl Engine {
    /// Files a resolved, unmerged incident for similarity search.
    pub(super) fn past_insert(&mut self, id: &str) {
        let Some(inc) = self.incidents.get(id) else {
            return;
        };
        if inc.is_open() || inc.merged_into.is_some() || !self.past.insert(id.to_string()) {
            return;
        }
        for t in incident_tokens(inc) {
            self.past_by_token
                .entry(t)
                .or_default()
                .insert(id.to_string());
        }
        self.past_bounds = None;
    }

    pub(super) fn past_remove(&mut self, id: &str) {
        if !self.past.remove(id) {
            return;
        }
        if let Some(inc) = self.incidents.get(id) {
            for t in incident_tokens(inc) {
                if let Some(ids) = self.past_by_token.get_mut(&t) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.past_by_token.remove(&t);
                    }
                }
            }
        }
        self.past_bounds = None;
    }

    /// Past (resolved) incidents most like this one: Jaccard similarity of their
    /// `alertname` and `service` values, among the 500 most recent past incidents.
    /// Only those sharing a token can score, so only those are looked at: the
    /// inverted index gives them, its ranges cut at the 500th most recent.
    pub(super) fn similar_to(&mut self, id: &str) -> Vec<Similar> {
        #[cfg(test)]
        if self.scan {
            return self.similar_to_scan(id);
        }
        let Some(inc) = self.incidents.get(id) else {
            return Vec::new();
        };
        let (c500, c501) = match &self.past_bounds {
            Some(b) => b.clone(),
            None => {
                let mut recent = self.past.iter().rev().skip(MAX_PAST_FOR_SIMILARITY - 1);
                let b = (recent.next().cloned(), recent.next().cloned());
                self.past_bounds = Some(b.clone());
                b
            }
        };
        // The tokens the aggregates keep, when kept, instead of a walk of all members.
        let scanned;
        let tokens = match self.open_sets.get(id).and_then(|s| s.agg.as_ref()) {
            Some(agg) => &agg.tokens,
            None => {
                scanned = incident_tokens(inc);
                &scanned
            }
        };
        if tokens.is_empty() {
            return Vec::new();
        }
        // The most recent 500 other than `id`: one further back when `id` is among them.
        let start = match &c500 {
            Some(c) if self.past.contains(id) && id >= c.as_str() => c501,
            other => other.clone(),
        };
        let mut candidates: BTreeSet<&String> = BTreeSet::new();
        for t in tokens {
            let Some(ids) = self.past_by_token.get(t) else {
                continue;
            };
            let range = match &start {
                Some(s) => ids.range::<String, _>(s..),
                None => ids.range::<String, _>(..),
            };
            candidates.extend(range.filter(|p| p.as_str() != id));
        }
        let mut scored: Vec<Similar> = candidates
            .into_iter()
            .filter_map(|pid| self.incidents.get(pid))
            .filter_map(|p| similarity(tokens, p))
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        scored.truncate(3);
        scored
    }
}
