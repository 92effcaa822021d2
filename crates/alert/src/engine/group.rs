//! Dedup and grouping: an alert folds into the record of its fingerprint and joins
//! its group; groups wait, flush and repeat on Alertmanager's timings.

use super::*;

#[derive(Debug)]
pub(super) struct Group {
    pub(super) key: String,
    pub(super) members: BTreeSet<u64>,
    pub(super) next_flush_ms: i64,
    pub(super) flushed: bool,
    pub(super) last_state: u64,
    pub(super) last_sent_ms: i64,
}

/// A group's notification timing, persisted so that a restart keeps Alertmanager's
/// semantics: a group already told waits for `group_interval` (or
/// `repeat_interval`) instead of flushing again after a fresh `group_wait`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTiming {
    /// The group's hash, as alerts' group keys are computed.
    pub group: Fingerprint,
    pub next_flush_ms: i64,
    pub flushed: bool,
    pub last_state: u64,
    pub last_sent_ms: i64,
}

impl Group {
    pub(super) fn timing(&self, gk: u64) -> GroupTiming {
        GroupTiming {
            group: Fingerprint(gk),
            next_flush_ms: self.next_flush_ms,
            flushed: self.flushed,
            last_state: self.last_state,
            last_sent_ms: self.last_sent_ms,
        }
    }
}

impl Engine {
    /// Puts back the timing of groups [`Engine::restore`] rebuilt from their alerts.
    pub fn restore_groups(&mut self, timings: Vec<GroupTiming>) {
        for t in timings {
            let gk = t.group.get();
            if let Some(g) = self.groups.get_mut(&gk) {
                self.due.remove(&(g.next_flush_ms, gk));
                self.due.insert((t.next_flush_ms, gk));
                g.next_flush_ms = t.next_flush_ms;
                g.flushed = t.flushed;
                g.last_state = t.last_state;
                g.last_sent_ms = t.last_sent_ms;
            }
        }
    }

    pub(super) fn group_key(&self, labels: &Labels, fp: u64) -> (u64, String) {
        match &self.cfg.group_by {
            None => (fp, fingerprint_hex(fp)),
            Some(by) => {
                let h = hash_pairs(
                    by.iter()
                        .map(|name| (name.as_str(), labels.get(name).map_or("", String::as_str))),
                );
                (h, fingerprint_hex(h))
            }
        }
    }

    /// Takes one alert in: folds duplicates, closes resolved ones, puts it in its group.
    /// Returns its fingerprint.
    pub fn ingest(&mut self, a: IncomingAlert, now: i64) -> u64 {
        self.stats.received += 1;
        let fp = fingerprint(&a.labels);
        let resolved = a.status == AlertStatus::Resolved || a.ends_at_ms.is_some_and(|e| e <= now);
        let status = if resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        };
        let (gk, key) = self.group_key(&a.labels, fp);
        let timeout = self.timeout_ms();
        let (old, new) = match self.alerts.entry(fp) {
            Entry::Occupied(mut e) => {
                self.stats.deduplicated += 1;
                let r = e.get_mut();
                let before = (deadline(r, fp, timeout), may_inhibit(r));
                r.count += 1;
                r.last_seen_ms = now;
                if r.annotations != a.annotations {
                    r.annotations = a.annotations;
                }
                if r.status == AlertStatus::Resolved && status == AlertStatus::Firing {
                    r.starts_at_ms = a.starts_at_ms.unwrap_or(now);
                } else if let Some(s) = a.starts_at_ms {
                    r.starts_at_ms = r.starts_at_ms.min(s);
                }
                if status == AlertStatus::Resolved && r.status == AlertStatus::Firing {
                    self.stats.resolved += 1;
                }
                r.ends_at_ms = if resolved {
                    a.ends_at_ms.or(Some(now))
                } else {
                    a.ends_at_ms
                };
                r.status = status;
                if a.generator_url != r.generator_url {
                    r.generator_url = a.generator_url;
                }
                if before.1 != may_inhibit(r) {
                    count_source(
                        &self.cfg.inhibit_rules,
                        &mut self.inhibit_sources,
                        &r.labels,
                        !before.1,
                    );
                }
                (before.0, deadline(r, fp, timeout))
            }
            Entry::Vacant(e) => {
                let r = e.insert(AlertRecord {
                    fingerprint: Fingerprint(fp),
                    labels: a.labels,
                    annotations: a.annotations,
                    status,
                    starts_at_ms: a.starts_at_ms.unwrap_or(now),
                    ends_at_ms: if resolved {
                        a.ends_at_ms.or(Some(now))
                    } else {
                        a.ends_at_ms
                    },
                    generator_url: a.generator_url,
                    count: 1,
                    first_seen_ms: now,
                    last_seen_ms: now,
                    silenced_by: Vec::new(),
                    inhibited: false,
                    incident: None,
                });
                if may_inhibit(r) {
                    count_source(
                        &self.cfg.inhibit_rules,
                        &mut self.inhibit_sources,
                        &r.labels,
                        true,
                    );
                }
                (None, deadline(r, fp, timeout))
            }
        };
        self.schedule(old, new);
        // A new record of an alert that is a member already (it resolved and left,
        // and fires again) counts in its incidents' common labels again.
        if self.owners.contains_key(&fp)
            && let Some(r) = self.alerts.get(&fp)
            && r.count == 1
        {
            held_changed(&self.owners, &mut self.open_sets, fp, &r.labels, true);
        }
        self.join_group(gk, key, fp, now);
        fp
    }

    /// Adds an alert to its group; a new group first flushes after `group_wait`.
    pub(super) fn join_group(&mut self, gk: u64, key: String, fp: u64, now: i64) {
        let wait = self.cfg.group_wait.as_std().as_millis() as i64;
        let due = &mut self.due;
        self.groups
            .entry(gk)
            .or_insert_with(|| {
                due.insert((now + wait, gk));
                Group {
                    key,
                    members: BTreeSet::new(),
                    next_flush_ms: now + wait,
                    flushed: false,
                    last_state: 0,
                    last_sent_ms: 0,
                }
            })
            .members
            .insert(fp);
    }
}
