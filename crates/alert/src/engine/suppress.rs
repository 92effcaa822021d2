//! Silences and inhibition: which alerts are muted, by whom, as rules and sources change.

use super::*;

/// Whether an alert can inhibit others (before the rules' source matchers).
pub(super) fn may_inhibit(r: &AlertRecord) -> bool {
    r.status == AlertStatus::Firing && r.silenced_by.is_empty()
}

/// Adds (or takes away) an alert's part in the inhibition sources.
pub(super) fn count_source(
    rules: &[vigil_bundle::model::InhibitRule],
    counts: &mut [HashMap<Vec<String>, usize>],
    labels: &Labels,
    add: bool,
) {
    for (rule, c) in rules.iter().zip(counts.iter_mut()) {
        if !rule.source.iter().all(|m| m.matches(labels)) {
            continue;
        }
        let key = equal_values(&rule.equal, labels);
        if add {
            *c.entry(key).or_default() += 1;
        } else if let Entry::Occupied(mut e) = c.entry(key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

pub(super) fn equal_values(equal: &[String], labels: &Labels) -> Vec<String> {
    equal
        .iter()
        .map(|l| labels.get(l).cloned().unwrap_or_default())
        .collect()
}

/// Alertmanager's rule: muted when a firing source alert has the same `equal` values.
/// An alert that matches the source side of a rule is not muted by that rule.
/// `sources` are counted as they are now, `deltas` what this tick changed in them.
pub(super) fn is_inhibited(
    rules: &[vigil_bundle::model::InhibitRule],
    sources: &[HashMap<Vec<String>, usize>],
    deltas: &[HashMap<Vec<String>, i64>],
    labels: &Labels,
) -> bool {
    rules
        .iter()
        .zip(sources)
        .zip(deltas)
        .any(|((rule, srcs), delta)| {
            if (srcs.is_empty() && delta.is_empty())
                || !rule.target.iter().all(|m| m.matches(labels))
                || rule.source.iter().all(|m| m.matches(labels))
            {
                return false;
            }
            let key = equal_values(&rule.equal, labels);
            let now = srcs.get(&key).map_or(0, |n| *n as i64);
            now - delta.get(&key).copied().unwrap_or(0) > 0
        })
}

impl Engine {
    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    pub fn add_silence(&mut self, s: Silence) {
        self.silences.retain(|x| x.id != s.id);
        self.silences.push(s);
    }

    /// Ends a silence now. Returns it, changed.
    pub fn expire_silence(&mut self, id: &str, now: i64) -> Option<Silence> {
        let s = self.silences.iter_mut().find(|s| s.id == id)?;
        if s.ends_at_ms > now {
            s.ends_at_ms = now;
        }
        if s.starts_at_ms > now {
            s.starts_at_ms = now;
        }
        Some(s.clone())
    }
}
