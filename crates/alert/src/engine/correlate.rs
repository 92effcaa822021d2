//! Correlation: a flushed group folds into the open incident it relates to (by
//! time, shared labels and the dependency map), or opens one; related incidents merge.

use super::*;

impl Engine {
    pub(super) fn correlate(&mut self, gk: u64, now: i64, out: &mut TickResult) {
        let Some(g) = self.groups.get(&gk) else {
            return;
        };
        let key = g.key.clone();
        let members: Vec<u64> = g
            .members
            .iter()
            .copied()
            .filter(|fp| {
                self.alerts
                    .get(fp)
                    .is_some_and(|r| r.silenced_by.is_empty() && !r.inhibited)
            })
            .collect();
        let firing: Vec<u64> = members
            .iter()
            .copied()
            .filter(|fp| {
                self.alerts
                    .get(fp)
                    .is_some_and(|r| r.status == AlertStatus::Firing)
            })
            .collect();
        let existing = self
            .group_incident
            .get(&key)
            .filter(|id| self.incidents.get(*id).is_some_and(Incident::is_open))
            .cloned();
        let id = match existing {
            Some(id) => id,
            None if firing.is_empty() => {
                // Resolutions of alerts we followed in an incident still count.
                let known: Vec<String> = members
                    .iter()
                    .filter_map(|fp| self.alerts.get(fp).and_then(|r| r.incident.clone()))
                    .collect();
                match known
                    .into_iter()
                    .find(|id| self.incidents.get(id).is_some_and(Incident::is_open))
                {
                    Some(id) => id,
                    None => return,
                }
            }
            None => {
                let related = self.related_incidents(&firing, now);
                match related.split_first() {
                    Some((first, rest)) => {
                        let first = first.clone();
                        for other in rest {
                            self.merge(&first, other, now, out);
                        }
                        first
                    }
                    None => self.open_incident(now, out),
                }
            }
        };
        self.group_incident.insert(key.clone(), id.clone());
        self.ensure_open_sets(&id);
        let (Some(inc), Some(sets)) = (self.incidents.get_mut(&id), self.open_sets.get_mut(&id))
        else {
            return;
        };
        if sets.groups.insert(key.clone()) {
            inc.groups.push(key);
        }
        let ix = self.index.entry(id.clone()).or_default();
        let mut added = Vec::new();
        let mut tok = String::new();
        for fp in &members {
            let Some(r) = self.alerts.get_mut(fp) else {
                continue;
            };
            if r.incident.as_deref() != Some(id.as_str()) {
                r.incident = Some(id.clone());
                out.changed_alerts.push(r.clone());
            }
            match sets.find(r.fingerprint) {
                Some(i) => {
                    if let Some(m) = inc.alerts.get_mut(i)
                        && (m.status != r.status || m.starts_at_ms != r.starts_at_ms)
                    {
                        let rank = severity_rank(&m.severity);
                        if let Some(agg) = sets.agg.as_mut() {
                            agg.live(m, i, rank, false);
                        }
                        m.status = r.status;
                        m.starts_at_ms = r.starts_at_ms;
                        if let Some(agg) = sets.agg.as_mut() {
                            agg.live(m, i, rank, true);
                        }
                    }
                }
                None => {
                    added.push(r.alertname().to_string());
                    let i = inc.alerts.len();
                    let m = Member {
                        fingerprint: r.fingerprint,
                        alertname: r.alertname().to_string(),
                        service: r.labels.get("service").cloned(),
                        status: r.status,
                        role: Role::Symptom,
                        starts_at_ms: r.starts_at_ms,
                        severity: r.labels.get("severity").cloned().unwrap_or_default(),
                    };
                    sets.place(r.fingerprint, i);
                    if let Some(agg) = sets.agg.as_mut() {
                        let n = r.fingerprint.get();
                        self.owners.entry(n).or_default().push(sets.id.clone());
                        agg.add(&m, i);
                        agg.hold(&r.labels, true);
                    }
                    inc.alerts.push(m);
                }
            }
            for l in &self.cfg.correlation_labels {
                if let Some(v) = r.labels.get(l) {
                    tok.clear();
                    tok.push_str(l);
                    tok.push('=');
                    tok.push_str(v);
                    if !ix.tokens.contains(tok.as_str()) {
                        self.by_token
                            .entry(tok.clone())
                            .or_default()
                            .insert(id.clone());
                        ix.tokens.insert(tok.clone());
                    }
                }
            }
            if let Some(s) = r.labels.get("service")
                && !ix.services.contains(s)
            {
                self.by_service
                    .entry(s.clone())
                    .or_default()
                    .insert(id.clone());
                ix.services.insert(s.clone());
            }
            if ix.cluster.is_none() {
                ix.cluster = r.labels.get(SCOPE_LABEL).cloned();
            }
        }
        inc.updated_ms = now;
        if !added.is_empty() {
            let detail = if added.len() <= 5 {
                added.join(", ")
            } else {
                format!("{} and {} more", added[..5].join(", "), added.len() - 5)
            };
            out.event(&id, now, "alerts_added", detail);
        }
        self.recompute(&id, now, out);
    }

    /// Open incidents the firing alerts are related to, oldest first. Only the
    /// incidents that share a correlation token with an alert, or hold a service
    /// related to its own, are looked at.
    pub(super) fn related_incidents(&self, firing: &[u64], now: i64) -> Vec<String> {
        #[cfg(test)]
        if self.scan {
            return self.related_incidents_scan(firing, now);
        }
        let window = self.cfg.correlation_window.as_std().as_millis() as i64;
        let mut related: HashSet<&str> = HashSet::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut tok = String::new();
        for r in firing.iter().filter_map(|fp| self.alerts.get(fp)) {
            let cluster = r.labels.get(SCOPE_LABEL);
            seen.clear();
            let mut candidates: Vec<&String> = Vec::new();
            for l in &self.cfg.correlation_labels {
                if let Some(v) = r.labels.get(l) {
                    tok.clear();
                    tok.push_str(l);
                    tok.push('=');
                    tok.push_str(v);
                    if let Some(ids) = self.by_token.get(tok.as_str()) {
                        candidates.extend(ids.iter());
                    }
                }
            }
            if let Some(s) = r.labels.get("service") {
                for t in self.topo.neighbours(s) {
                    if let Some(ids) = self.by_service.get(t) {
                        candidates.extend(ids.iter());
                    }
                }
            }
            for id in candidates {
                if related.contains(id.as_str()) || !seen.insert(id.as_str()) {
                    continue;
                }
                let (Some(inc), Some(ix)) = (self.incidents.get(id), self.index.get(id)) else {
                    continue;
                };
                if !inc.is_open() || now - inc.updated_ms > window {
                    continue;
                }
                if let (Some(a), Some(b)) = (cluster, &ix.cluster)
                    && a != b
                {
                    continue;
                }
                related.insert(id.as_str());
            }
        }
        let mut out: Vec<String> = related.into_iter().map(str::to_string).collect();
        out.sort_by(|a, b| {
            let at = |id: &String| self.incidents.get(id).map_or(0, |i| i.opened_ms);
            at(a).cmp(&at(b)).then_with(|| a.cmp(b))
        });
        out
    }

    pub(super) fn open_incident(&mut self, now: i64, out: &mut TickResult) -> String {
        let id = format!("inc-{:06}", self.next_incident);
        self.next_incident += 1;
        self.stats.incidents_opened += 1;
        self.incidents.insert(
            id.clone(),
            Incident {
                id: id.clone(),
                status: IncidentStatus::Open,
                severity: String::new(),
                title: String::new(),
                opened_ms: now,
                updated_ms: now,
                resolved_ms: None,
                labels: Labels::new(),
                common_labels: Labels::new(),
                annotations: Labels::new(),
                value: None,
                root_cause: None,
                root_service: None,
                services: Vec::new(),
                alerts: Vec::new(),
                groups: Vec::new(),
                merged_into: None,
                similar: Vec::new(),
                recommended_runbooks: Vec::new(),
                executions: Vec::new(),
            },
        );
        self.index.insert(id.clone(), IncIndex::default());
        self.open += 1;
        out.event(&id, now, "opened", "new incident".into());
        id
    }

    /// Folds incident `from` into `into`.
    pub(super) fn merge(&mut self, into: &str, from: &str, now: i64, out: &mut TickResult) {
        self.past_remove(from);
        let Some(mut src) = self.incidents.remove(from) else {
            return;
        };
        if src.is_open() {
            self.open -= 1;
        }
        src.status = IncidentStatus::Resolved;
        src.resolved_ms = Some(now);
        src.merged_into = Some(into.to_string());
        src.updated_ms = now;
        let moved = std::mem::take(&mut src.alerts);
        let groups = src.groups.clone();
        let src_ix = self.ix_remove(from);
        self.incidents.insert(from.to_string(), src);
        out.event(from, now, "merged", format!("folded into {into}"));
        for g in &groups {
            self.group_incident.insert(g.clone(), into.to_string());
        }
        for m in &moved {
            if let Some(r) = self.alerts.get_mut(&m.fingerprint.get()) {
                r.incident = Some(into.to_string());
                out.changed_alerts.push(r.clone());
            }
        }
        self.ensure_open_sets(into);
        if let (Some(dst), Some(sets)) =
            (self.incidents.get_mut(into), self.open_sets.get_mut(into))
        {
            let n = moved.len();
            for m in moved {
                if sets.find(m.fingerprint).is_none() {
                    let i = dst.alerts.len();
                    sets.place(m.fingerprint, i);
                    if let Some(agg) = sets.agg.as_mut() {
                        let fp = m.fingerprint.get();
                        // Members come in with their roles and states.
                        self.owners.entry(fp).or_default().push(sets.id.clone());
                        agg.add(&m, i);
                        if m.role == Role::RootCause {
                            agg.roots.push(i);
                        }
                        if let Some(r) = self.alerts.get(&fp) {
                            agg.hold(&r.labels, true);
                        }
                    }
                    dst.alerts.push(m);
                }
            }
            for g in groups {
                if sets.groups.insert(g.clone()) {
                    dst.groups.push(g);
                }
            }
            dst.opened_ms = dst.opened_ms.min(now);
            self.index.entry(into.to_string()).or_default();
            for t in src_ix.tokens {
                self.ix_token(into, t);
            }
            for s in src_ix.services {
                self.ix_service(into, s);
            }
            out.event(into, now, "merged", format!("absorbed {from} ({n} alerts)"));
        }
    }
}
