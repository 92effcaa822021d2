//! An incident's life after it opens: status changes by hand, the runbooks started
//! for it, and their reconciliation with the store after a restart.

use super::*;

impl Engine {
    /// A manual lifecycle change (acknowledged, remediating, resolved).
    pub fn set_status(
        &mut self,
        id: &str,
        status: IncidentStatus,
        why: &str,
        now: i64,
    ) -> Option<(Incident, IncidentEvent)> {
        let inc = self.incidents.get_mut(id)?;
        if inc.status == status {
            return Some((
                inc.clone(),
                IncidentEvent {
                    seq: 0,
                    ts_ms: now,
                    kind: "unchanged".into(),
                    detail: why.into(),
                },
            ));
        }
        let before = inc.status;
        inc.status = status;
        inc.updated_ms = now;
        if status == IncidentStatus::Resolved {
            inc.resolved_ms = Some(now);
        }
        let ev = IncidentEvent {
            seq: 0,
            ts_ms: now,
            kind: status.as_str().into(),
            detail: format!("{} → {}: {why}", before.as_str(), status.as_str()),
        };
        let changed = inc.clone();
        if status == IncidentStatus::Resolved {
            self.open -= 1;
            self.ix_remove(id);
            self.past_insert(id);
        } else if before == IncidentStatus::Resolved {
            self.open += 1;
            self.past_remove(id);
        }
        Some((changed, ev))
    }

    /// Forgets incidents resolved before `before_ms` (retention): they leave memory,
    /// the past incidents similarity looks at, and any group still pointing at them.
    /// Returns their ids, for the store to forget them too.
    pub fn forget_resolved(&mut self, before_ms: i64) -> Vec<String> {
        let old: Vec<String> = self
            .incidents
            .values()
            .filter(|i| !i.is_open() && i.resolved_ms.unwrap_or(i.updated_ms) < before_ms)
            .map(|i| i.id.clone())
            .collect();
        if old.is_empty() {
            return old;
        }
        let gone: HashSet<&str> = old.iter().map(String::as_str).collect();
        for id in &old {
            self.past_remove(id);
        }
        self.group_incident
            .retain(|_, id| !gone.contains(id.as_str()));
        for id in &old {
            self.incidents.remove(id);
        }
        old
    }

    /// Records what was triggered for an incident.
    pub fn record_trigger(&mut self, id: &str, t: Triggered) -> Option<Incident> {
        let inc = self.incidents.get_mut(id)?;
        if t.mode == RunMode::Live && inc.status == IncidentStatus::Open {
            inc.status = IncidentStatus::Remediating;
        }
        // One entry per run: the outcome replaces what was recorded as it started
        // (or as it paused for an approval).
        let same_run = inc.executions.iter().position(|e| {
            e.runbook == t.runbook
                && (e.status == RunOutcome::Starting
                    || (e.execution.is_some() && e.execution == t.execution))
        });
        match same_run {
            Some(i) if t.status != RunOutcome::Starting => inc.executions[i] = t,
            _ => inc.executions.push(t),
        }
        Some(inc.clone())
    }

    /// After a restart, brings the runbook entries of incidents up to date with the
    /// executions in the store (`found`: (incident, runbook) → (execution, status)):
    /// a run recorded as `starting` becomes the execution it created; one that never
    /// created any is dropped, so that it starts now (nothing of it ran); a run seen
    /// as running or waiting takes the status its execution reached.
    pub fn reconcile_starting(
        &mut self,
        found: &HashMap<(String, String), (String, RunOutcome)>,
    ) -> Vec<Incident> {
        let mut changed = Vec::new();
        for inc in self.incidents.values_mut() {
            let before = inc.executions.clone();
            let id = inc.id.clone();
            inc.executions.retain_mut(|e| {
                if !e.status.is_pending() {
                    return true;
                }
                match found.get(&(id.clone(), e.runbook.clone())) {
                    Some((exec, status)) => {
                        e.execution = Some(exec.clone());
                        e.status = *status;
                        true
                    }
                    None => e.status != RunOutcome::Starting,
                }
            });
            if inc.executions != before {
                changed.push(inc.clone());
            }
        }
        changed
    }
}
