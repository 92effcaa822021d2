//! Tests: the scans the indexes replaced, kept as oracles.

use super::similar::{MAX_PAST_FOR_SIMILARITY, incident_tokens, similarity};
use super::*;

/// The scans the indexes replaced, kept as the oracle they are tested against.
impl Engine {
    pub(super) fn related_incidents_scan(&self, firing: &[u64], now: i64) -> Vec<String> {
        let window = self.cfg.correlation_window.as_std().as_millis() as i64;
        let alerts: Vec<&AlertRecord> =
            firing.iter().filter_map(|fp| self.alerts.get(fp)).collect();
        let mut out = Vec::new();
        for (id, ix) in &self.index {
            let Some(inc) = self.incidents.get(id) else {
                continue;
            };
            if !inc.is_open() || now - inc.updated_ms > window {
                continue;
            }
            let related = alerts.iter().any(|r| {
                if let (Some(a), Some(b)) = (r.labels.get(SCOPE_LABEL), &ix.cluster)
                    && a != b
                {
                    return false;
                }
                let shared = self.cfg.correlation_labels.iter().any(|l| {
                    r.labels
                        .get(l)
                        .is_some_and(|v| ix.tokens.contains(&format!("{l}={v}")))
                });
                shared
                    || r.labels
                        .get("service")
                        .is_some_and(|s| ix.services.iter().any(|t| self.topo.related(s, t)))
            });
            if related {
                out.push(id.clone());
            }
        }
        out.sort_by(|a, b| {
            let at = |id: &String| self.incidents.get(id).map_or(0, |i| i.opened_ms);
            at(a).cmp(&at(b)).then_with(|| a.cmp(b))
        });
        out
    }

    /// The due queue, the expiry queue, the inhibition sources, the inverted
    /// indexes and the open count, each against the full scan it replaces.
    pub(super) fn check_against_scans(&self, now: i64) {
        let timeout = self.timeout_ms();
        let mut due: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= now)
            .map(|(k, _)| *k)
            .collect();
        due.sort_unstable();
        let mut queued: Vec<u64> = self
            .due
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, k)| *k)
            .collect();
        queued.sort_unstable();
        assert_eq!(due, queued, "due groups");
        assert_eq!(self.due.len(), self.groups.len(), "one due entry per group");
        let mut ending: Vec<(i64, u64)> = self
            .alerts
            .iter()
            .filter_map(|(fp, r)| deadline(r, *fp, timeout))
            .collect();
        ending.sort_unstable();
        assert_eq!(
            ending,
            self.expiry.iter().copied().collect::<Vec<_>>(),
            "expiry"
        );
        let sources: Vec<HashSet<Vec<String>>> = self
            .cfg
            .inhibit_rules
            .iter()
            .map(|rule| {
                self.alerts
                    .values()
                    .filter(|r| may_inhibit(r) && rule.source.iter().all(|m| m.matches(&r.labels)))
                    .map(|r| equal_values(&rule.equal, &r.labels))
                    .collect()
            })
            .collect();
        let counted: Vec<HashSet<Vec<String>>> = self
            .inhibit_sources
            .iter()
            .map(|c| c.keys().cloned().collect())
            .collect();
        assert!(self.tick_deltas.iter().all(HashMap::is_empty) || self.tick_at == Some(now));
        assert_eq!(sources, counted, "inhibition sources");
        let mut by_token: HashMap<String, HashSet<String>> = HashMap::new();
        let mut by_service: HashMap<String, HashSet<String>> = HashMap::new();
        for (id, ix) in &self.index {
            for t in &ix.tokens {
                by_token.entry(t.clone()).or_default().insert(id.clone());
            }
            for t in &ix.services {
                by_service.entry(t.clone()).or_default().insert(id.clone());
            }
        }
        assert_eq!(by_token, self.by_token, "token index");
        assert_eq!(by_service, self.by_service, "service index");
        let open = self.incidents.values().filter(|i| i.is_open()).count();
        assert_eq!(open, self.open, "open incidents");
        let past: BTreeSet<String> = self
            .incidents
            .values()
            .filter(|p| !p.is_open() && p.merged_into.is_none())
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(past, self.past, "past incidents");
    }

    pub(super) fn similar_to_scan(&self, id: &str) -> Vec<Similar> {
        let Some(inc) = self.incidents.get(id) else {
            return Vec::new();
        };
        let tokens = incident_tokens(inc);
        if tokens.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<Similar> = self
            .incidents
            .values()
            .rev()
            .filter(|p| p.id != id && !p.is_open() && p.merged_into.is_none())
            .take(MAX_PAST_FOR_SIMILARITY)
            .filter_map(|p| similarity(&tokens, p))
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        scored.truncate(3);
        scored
    }
}
