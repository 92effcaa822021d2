//! A tick: due groups are looked at, suppression recomputed for them, and the ones
//! to flush handed to correlation, within a budget of work per turn.

use super::*;

impl Engine {
    /// Advances time: resolves timed-out alerts, evaluates silences and inhibition,
    /// flushes due groups and correlates them into incidents.
    pub fn tick(&mut self, now: i64) -> TickResult {
        self.tick_bounded(now, usize::MAX)
    }

    /// [`Engine::tick`] doing about `budget` units of work at most (a timed-out
    /// alert is one, a due group one plus its alerts; at least one group when any is
    /// due), so that a caller holding the engine behind a lock can let go between
    /// turns. `more` says that due work was left: call again with the same `now`.
    /// Timed-out alerts all resolve before any group is looked at, as in one tick.
    pub fn tick_bounded(&mut self, now: i64, budget: usize) -> TickResult {
        #[cfg(test)]
        if self.scan {
            self.check_against_scans(now);
        }
        if self.tick_at != Some(now) {
            self.tick_deltas.iter_mut().for_each(HashMap::clear);
            self.tick_at = Some(now);
        }
        let out = self.tick_turn(now, budget);
        if !out.more {
            self.tick_deltas.iter_mut().for_each(HashMap::clear);
            self.tick_at = None;
        }
        out
    }

    pub(super) fn tick_turn(&mut self, now: i64, budget: usize) -> TickResult {
        let mut out = TickResult::default();
        let mut spent = 0usize;
        // Alerts whose end passed, or that were not refreshed within resolve_timeout.
        while let Some(&(at, fp)) = self.expiry.first() {
            if at > now {
                break;
            }
            if spent >= budget {
                out.more = true;
                return out;
            }
            self.expiry.pop_first();
            spent += 1;
            let Some(r) = self.alerts.get_mut(&fp) else {
                continue;
            };
            if r.status != AlertStatus::Firing {
                continue;
            }
            if may_inhibit(r) {
                count_source(
                    &self.cfg.inhibit_rules,
                    &mut self.inhibit_sources,
                    &r.labels,
                    false,
                );
            }
            r.status = AlertStatus::Resolved;
            r.ends_at_ms.get_or_insert(now);
            self.stats.resolved += 1;
            out.changed_alerts.push(r.clone());
        }
        let mut due: Vec<u64> = Vec::new();
        while let Some(&(at, gk)) = self.due.first() {
            if at > now {
                break;
            }
            let cost = 1 + self.groups.get(&gk).map_or(0, |g| g.members.len());
            if !due.is_empty() && spent.saturating_add(cost) > budget {
                out.more = true;
                break;
            }
            self.due.pop_first();
            spent = spent.saturating_add(cost);
            due.push(gk);
        }
        if due.is_empty() {
            return out;
        }
        let active: Vec<&Silence> = self.silences.iter().filter(|s| s.is_active(now)).collect();
        let interval = self.cfg.group_interval.as_std().as_millis() as i64;
        let repeat = self.cfg.repeat_interval.as_std().as_millis() as i64;
        let mut flushes = Vec::new();
        for gk in due {
            let Some(g) = self.groups.get_mut(&gk) else {
                continue;
            };
            let mut state = Fnv1a::new();
            let mut firing = false;
            let mut visible = 0usize;
            for fp in &g.members {
                let Some(r) = self.alerts.get_mut(fp) else {
                    continue;
                };
                let silenced_by: Vec<String> = active
                    .iter()
                    .filter(|s| s.matches(&r.labels))
                    .map(|s| s.id.clone())
                    .collect();
                let inhibited = r.status == AlertStatus::Firing
                    && is_inhibited(
                        &self.cfg.inhibit_rules,
                        &self.inhibit_sources,
                        &self.tick_deltas,
                        &r.labels,
                    );
                if silenced_by != r.silenced_by || inhibited != r.inhibited {
                    if !silenced_by.is_empty() && r.silenced_by.is_empty() {
                        self.stats.silenced += 1;
                    }
                    if inhibited && !r.inhibited {
                        self.stats.inhibited += 1;
                    }
                    if silenced_by.is_empty() != r.silenced_by.is_empty()
                        && r.status == AlertStatus::Firing
                        && !self.cfg.inhibit_rules.is_empty()
                    {
                        let add = silenced_by.is_empty();
                        let rules = &self.cfg.inhibit_rules;
                        count_source(rules, &mut self.inhibit_sources, &r.labels, add);
                        for (rule, d) in rules.iter().zip(self.tick_deltas.iter_mut()) {
                            if rule.source.iter().all(|m| m.matches(&r.labels)) {
                                *d.entry(equal_values(&rule.equal, &r.labels)).or_default() +=
                                    if add { 1 } else { -1 };
                            }
                        }
                    }
                    r.silenced_by = silenced_by;
                    r.inhibited = inhibited;
                    out.changed_alerts.push(r.clone());
                }
                if !r.silenced_by.is_empty() || r.inhibited {
                    continue;
                }
                visible += 1;
                firing |= r.status == AlertStatus::Firing;
                state
                    .write(&fp.to_be_bytes())
                    .write_u8(u8::from(r.status == AlertStatus::Firing));
            }
            g.next_flush_ms = now + interval;
            self.due.insert((g.next_flush_ms, gk));
            let send = if !g.flushed {
                visible > 0
            } else {
                state.finish() != g.last_state || (firing && now - g.last_sent_ms >= repeat)
            };
            if send {
                g.flushed = true;
                g.last_state = state.finish();
                g.last_sent_ms = now;
                flushes.push(gk);
            }
            out.changed_groups.push(g.timing(gk));
        }
        let mut removed: HashSet<Fingerprint> = HashSet::new();
        for gk in flushes {
            self.stats.groups_flushed += 1;
            out.flushed_groups += 1;
            self.correlate(gk, now, &mut out);
            // Resolved alerts have been told; they leave the group.
            if let Some(g) = self.groups.get_mut(&gk) {
                let gone: Vec<u64> = g
                    .members
                    .iter()
                    .copied()
                    .filter(|fp| {
                        self.alerts
                            .get(fp)
                            .is_none_or(|r| r.status == AlertStatus::Resolved)
                    })
                    .collect();
                for fp in gone {
                    g.members.remove(&fp);
                    if let Some(r) = self.alerts.remove(&fp) {
                        held_changed(&self.owners, &mut self.open_sets, fp, &r.labels, false);
                    }
                }
                if g.members.is_empty() {
                    self.due.remove(&(g.next_flush_ms, gk));
                    self.groups.remove(&gk);
                    removed.insert(Fingerprint(gk));
                    out.removed_groups.push(Fingerprint(gk));
                }
            }
        }
        if !removed.is_empty() {
            out.changed_groups.retain(|t| !removed.contains(&t.group));
        }
        out
    }
}
