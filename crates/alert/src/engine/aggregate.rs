//! What an incident shows, derived from its members: root cause, severity, title,
//! common labels, recommended runbooks; kept as aggregates for large incidents and
//! recomputed from a scan for small ones.

use super::*;

/// Below this many members an incident is recomputed from a scan, which costs about
/// what keeping aggregates for it would.
pub(super) const AGG_MIN_MEMBERS: usize = 64;

/// An open incident's members and groups as sets, so that folding a group into a
/// large incident does not scan its lists, and what [`Engine::recompute`] derives
/// from its members, kept as they change. Built when first needed.
#[derive(Debug)]
pub(super) struct OpenSets {
    pub(super) id: Arc<str>,
    /// Member fingerprint → position in `Incident::alerts` (the first one).
    pub(super) pos: HashMap<u64, usize>,
    pub(super) groups: HashSet<String>,
    /// Every member is held once: only then do the aggregates say what a scan of the
    /// members says.
    pub(super) exact: bool,
    /// Built by a recompute once the incident is large enough to be worth it, while
    /// `exact`; dropped when the full recompute takes over.
    pub(super) agg: Option<Agg>,
}

/// A member's place in the root-cause order: earliest start, then the higher
/// severity, then the first in `Incident::alerts` (as `min_by_key` picks).
pub(super) type RootKey = (i64, Reverse<u8>, usize);

/// What [`Engine::recompute`] needs from all members of an open incident.
#[derive(Debug, Default)]
pub(super) struct Agg {
    pub(super) firing: usize,
    /// Firing members by service, and those without one, in root-cause order.
    pub(super) live: BTreeMap<String, BTreeSet<RootKey>>,
    pub(super) live_none: BTreeSet<RootKey>,
    /// The highest severity of all members, the last of equals: (rank, position).
    pub(super) severity: Option<(u8, usize)>,
    /// Positions of the members whose role is root cause.
    pub(super) roots: Vec<usize>,
    /// [`incident_tokens`] of the members.
    pub(super) tokens: HashSet<String>,
    /// Over the members whose alert is held (in `Engine::alerts`): how many, and per
    /// label name how many have it and its values, counted. A label is common when
    /// all have it with one value.
    pub(super) held: usize,
    pub(super) names: HashMap<String, (usize, HashMap<String, usize>)>,
}

impl OpenSets {
    pub(super) fn of(inc: &Incident) -> OpenSets {
        let mut sets = OpenSets {
            id: Arc::from(inc.id.as_str()),
            pos: HashMap::with_capacity(inc.alerts.len()),
            groups: inc.groups.iter().cloned().collect(),
            exact: true,
            agg: None,
        };
        for (i, m) in inc.alerts.iter().enumerate() {
            if sets.find(m.fingerprint).is_some() {
                sets.exact = false;
            } else {
                sets.place(m.fingerprint, i);
            }
        }
        sets
    }

    pub(super) fn find(&self, fingerprint: Fingerprint) -> Option<usize> {
        self.pos.get(&fingerprint.get()).copied()
    }

    /// Files a new member at position `i`.
    pub(super) fn place(&mut self, fingerprint: Fingerprint, i: usize) {
        self.pos.insert(fingerprint.get(), i);
    }
}

impl Agg {
    /// From a scan of the members, and of which of them `alerts` holds.
    pub(super) fn of(inc: &Incident, sets: &OpenSets, alerts: &HashMap<u64, AlertRecord>) -> Agg {
        let mut agg = Agg::default();
        for (i, m) in inc.alerts.iter().enumerate() {
            agg.add(m, i);
            if m.role == Role::RootCause {
                agg.roots.push(i);
            }
        }
        for fp in sets.pos.keys() {
            if let Some(r) = alerts.get(fp) {
                agg.hold(&r.labels, true);
            }
        }
        agg
    }

    /// A member joins (at position `i`), as it is.
    pub(super) fn add(&mut self, m: &Member, i: usize) {
        self.tokens.insert(format!("alertname={}", m.alertname));
        if let Some(s) = &m.service {
            self.tokens.insert(format!("service={s}"));
        }
        let rank = severity_rank(&m.severity);
        if self.severity.is_none_or(|(r, _)| rank >= r) {
            self.severity = Some((rank, i));
        }
        self.live(m, i, rank, true);
    }

    /// Counts a member (at position `i`) in, or out of, the firing ones.
    pub(super) fn live(&mut self, m: &Member, i: usize, rank: u8, add: bool) {
        if m.status != AlertStatus::Firing {
            return;
        }
        let key = (m.starts_at_ms, Reverse(rank), i);
        let set = match &m.service {
            Some(s) => match self.live.get_mut(s) {
                Some(set) => set,
                None => self.live.entry(s.clone()).or_default(),
            },
            None => &mut self.live_none,
        };
        if add {
            set.insert(key);
            self.firing += 1;
        } else {
            set.remove(&key);
            self.firing -= 1;
            if set.is_empty()
                && let Some(s) = &m.service
            {
                self.live.remove(s);
            }
        }
    }

    /// A member's alert comes into, or leaves, `Engine::alerts`.
    pub(super) fn hold(&mut self, labels: &Labels, add: bool) {
        if add {
            self.held += 1;
            for (k, v) in labels {
                let e = match self.names.get_mut(k) {
                    Some(e) => e,
                    None => self.names.entry(k.clone()).or_default(),
                };
                e.0 += 1;
                match e.1.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        e.1.insert(v.clone(), 1);
                    }
                }
            }
        } else {
            self.held -= 1;
            for (k, v) in labels {
                let Some(e) = self.names.get_mut(k) else {
                    continue;
                };
                e.0 -= 1;
                if let Some(n) = e.1.get_mut(v) {
                    *n -= 1;
                    if *n == 0 {
                        e.1.remove(v);
                    }
                }
                if e.0 == 0 {
                    self.names.remove(k);
                }
            }
        }
    }

    /// The labels every held member's alert has (none held: `None`).
    pub(super) fn common(&self) -> Option<Labels> {
        (self.held > 0).then(|| {
            self.names
                .iter()
                .filter(|(_, (n, values))| *n == self.held && values.len() == 1)
                .filter_map(|(k, (_, values))| values.keys().next().map(|v| (k.clone(), v.clone())))
                .collect()
        })
    }
}

/// Files (or takes away) `sets`' members as held by its incident, for
/// [`held_changed`]: done while its aggregates exist.
pub(super) fn own(owners: &mut HashMap<u64, Vec<Arc<str>>>, sets: &OpenSets, add: bool) {
    for fp in sets.pos.keys() {
        if add {
            owners.entry(*fp).or_default().push(sets.id.clone());
        } else if let Some(ids) = owners.get_mut(fp) {
            ids.retain(|o| *o != sets.id);
            if ids.is_empty() {
                owners.remove(fp);
            }
        }
    }
}

/// An alert record of `fp` came or went: the open incidents holding it as a member
/// count it in, or out of, their common labels.
pub(super) fn held_changed(
    owners: &HashMap<u64, Vec<Arc<str>>>,
    open_sets: &mut HashMap<String, OpenSets>,
    fp: u64,
    labels: &Labels,
    add: bool,
) {
    let Some(ids) = owners.get(&fp) else {
        return;
    };
    for id in ids {
        if let Some(agg) = open_sets.get_mut(&**id).and_then(|s| s.agg.as_mut()) {
            agg.hold(labels, add);
        }
    }
}

/// An incident's title: its root cause's alert and service, and how many alerts and
/// services it holds.
pub(super) fn title(inc: &Incident, root: Option<&Member>) -> String {
    let Some(m) = root else {
        return "incident".into();
    };
    format!(
        "{} ({} alert{}{})",
        member_name(m),
        inc.alerts.len(),
        if inc.alerts.len() == 1 { "" } else { "s" },
        if inc.services.len() > 1 {
            format!(", {} services", inc.services.len())
        } else {
            String::new()
        }
    )
}

/// How a member is named to people: its alert, and its service when it has one.
pub(super) fn member_name(m: &Member) -> String {
    match &m.service {
        Some(s) => format!("{} on {s}", m.alertname),
        None => m.alertname.clone(),
    }
}

/// The runbooks that remediated similar past incidents, each once, most similar first.
pub(super) fn recommended_runbooks(similar: &[Similar]) -> Vec<String> {
    let mut recommended: Vec<String> = Vec::new();
    for r in similar.iter().flat_map(|s| &s.runbooks) {
        if !recommended.contains(r) {
            recommended.push(r.clone());
        }
    }
    recommended
}

impl Engine {
    /// Root cause, severity, labels, title, status and similar incidents, from the
    /// aggregates of the members: what [`Engine::recompute_full`] derives from all of
    /// them, at the cost of what changed. When no member fires (the incident
    /// resolves), or the aggregates cannot be exact, the full recompute runs.
    pub(super) fn recompute(&mut self, id: &str, now: i64, out: &mut TickResult) {
        #[cfg(test)]
        if self.scan {
            return self.recompute_full(id, now, out);
        }
        let Some(sets) = self.open_sets.get_mut(id) else {
            return self.recompute_full(id, now, out);
        };
        if sets.agg.is_none()
            && sets.exact
            && let Some(inc) = self.incidents.get(id)
            && inc.alerts.len() >= self.agg_min
        {
            sets.agg = Some(Agg::of(inc, sets, &self.alerts));
            own(&mut self.owners, sets, true);
        }
        if !sets.exact || sets.agg.as_ref().is_none_or(|a| a.firing == 0) {
            // Roles, and the rest, are set from a scan: the aggregates follow no more.
            if sets.agg.take().is_some() {
                own(&mut self.owners, sets, false);
            }
            return self.recompute_full(id, now, out);
        }
        let similar = self.similar_to(id);
        let (Some(inc), Some(agg)) = (
            self.incidents.get_mut(id),
            self.open_sets.get_mut(id).and_then(|s| s.agg.as_mut()),
        ) else {
            return;
        };
        let services = &agg.live;
        // How many of `within` are in `set`, walking the smaller of the two.
        let among = |set: Option<&HashSet<String>>| -> usize {
            let Some(set) = set else {
                return 0;
            };
            if set.len() < services.len() {
                set.iter().filter(|t| services.contains_key(*t)).count()
            } else {
                services.keys().filter(|t| set.contains(*t)).count()
            }
        };
        let root_service = services
            .keys()
            .map(String::as_str)
            .filter(|s| among(self.topo.deps_of(s)) == 0)
            .max_by_key(|s| {
                let dependents = among(self.topo.dependents_of(s));
                let earliest = services
                    .get(*s)
                    .and_then(|set| set.first())
                    .map_or(i64::MAX, |k| k.0);
                (dependents, Reverse(earliest))
            });
        // With no root service (none, or a dependency cycle), every firing member.
        let first = match root_service {
            Some(s) => services.get(s).and_then(|set| set.first()),
            None => services
                .values()
                .chain([&agg.live_none])
                .filter_map(BTreeSet::first)
                .min(),
        };
        let root_pos = first.map(|k| k.2);
        let root = root_pos
            .and_then(|i| inc.alerts.get(i))
            .map(|m| m.fingerprint);
        let root_service = root_service.map(str::to_string);
        let severity = agg
            .severity
            .and_then(|(_, i)| inc.alerts.get(i))
            .map(|m| m.severity.clone())
            .unwrap_or_default();
        if root != inc.root_cause {
            for i in agg.roots.drain(..) {
                if let Some(m) = inc.alerts.get_mut(i) {
                    m.role = Role::Symptom;
                }
            }
            if let Some(m) = root_pos.and_then(|i| inc.alerts.get_mut(i)) {
                m.role = Role::RootCause;
            }
            agg.roots.extend(root_pos);
            if let (Some(fp), Some(m)) = (root, root_pos.and_then(|i| inc.alerts.get(i))) {
                let name = member_name(m);
                out.event(
                    id,
                    now,
                    "root_cause",
                    format!("probable root cause: {name} ({fp})"),
                );
            }
            inc.root_cause = root;
        }
        inc.root_service = root_service;
        if severity != inc.severity {
            out.event(id, now, "severity", format!("severity {severity}"));
            inc.severity = severity;
        }
        if !inc.services.iter().eq(services.keys()) {
            inc.services = services.keys().cloned().collect();
        }
        // Labels: the root alert's; common labels: those every member alert shares.
        if let Some(r) = root.and_then(|fp| self.alerts.get(&fp.get())) {
            inc.labels = r.labels.clone();
            inc.annotations = r.annotations.clone();
            inc.value = r
                .annotations
                .get("value")
                .and_then(|v| v.trim().parse().ok());
        }
        if let Some(c) = agg.common() {
            inc.common_labels = c;
        }
        inc.title = title(inc, root_pos.and_then(|i| inc.alerts.get(i)));
        inc.recommended_runbooks = recommended_runbooks(&similar);
        inc.similar = similar;
        out.touch(id);
    }

    /// [`Engine::recompute`] from a scan of all members: the oracle of the
    /// aggregates, and what runs when they cannot be used.
    pub(super) fn recompute_full(&mut self, id: &str, now: i64, out: &mut TickResult) {
        let similar = self.similar_to(id);
        let Some(inc) = self.incidents.get_mut(id) else {
            return;
        };
        let live: Vec<&Member> = inc
            .alerts
            .iter()
            .filter(|m| m.status == AlertStatus::Firing)
            .collect();
        let pool: Vec<&Member> = if live.is_empty() {
            inc.alerts.iter().collect()
        } else {
            live
        };
        let services: BTreeSet<String> = pool.iter().filter_map(|m| m.service.clone()).collect();
        let mut earliest: HashMap<&str, i64> = HashMap::new();
        for m in &pool {
            if let Some(s) = m.service.as_deref() {
                let e = earliest.entry(s).or_insert(i64::MAX);
                *e = (*e).min(m.starts_at_ms);
            }
        }
        // How many of `within` are in `set`, walking the smaller of the two: the
        // dependency closure is bounded by the topology, `services` by the incident.
        let among = |set: Option<&HashSet<String>>| -> usize {
            let Some(set) = set else {
                return 0;
            };
            if set.len() < services.len() {
                set.iter().filter(|t| services.contains(*t)).count()
            } else {
                services.iter().filter(|t| set.contains(*t)).count()
            }
        };
        let roots: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| among(self.topo.deps_of(s)) == 0)
            .collect();
        let root_service = roots
            .iter()
            .copied()
            .max_by_key(|s| {
                let dependents = among(self.topo.dependents_of(s));
                let earliest = earliest.get(s).copied().unwrap_or(i64::MAX);
                (dependents, std::cmp::Reverse(earliest))
            })
            .map(str::to_string);
        let root = pool
            .iter()
            .copied()
            .filter(|m| root_service.is_none() || m.service == root_service)
            .min_by_key(|m| {
                (
                    m.starts_at_ms,
                    std::cmp::Reverse(severity_rank(&m.severity)),
                )
            })
            .map(|m| m.fingerprint);
        let severity = inc
            .alerts
            .iter()
            .map(|m| m.severity.as_str())
            .max_by_key(|s| severity_rank(s))
            .unwrap_or("")
            .to_string();
        if root != inc.root_cause {
            for m in inc.alerts.iter_mut() {
                m.role = if Some(m.fingerprint) == root {
                    Role::RootCause
                } else {
                    Role::Symptom
                };
            }
            if let Some(fp) = root {
                let name = inc
                    .alerts
                    .iter()
                    .find(|m| m.fingerprint == fp)
                    .map(member_name)
                    .unwrap_or_default();
                out.event(
                    id,
                    now,
                    "root_cause",
                    format!("probable root cause: {name} ({fp})"),
                );
            }
            inc.root_cause = root;
        }
        inc.root_service = root_service;
        if severity != inc.severity {
            out.event(id, now, "severity", format!("severity {severity}"));
            inc.severity = severity;
        }
        inc.services = services.iter().map(|s| s.to_string()).collect();
        // Labels: the root alert's; common labels: those every member alert shares.
        if let Some(r) = root.and_then(|fp| self.alerts.get(&fp.get())) {
            inc.labels = r.labels.clone();
            inc.annotations = r.annotations.clone();
            inc.value = r
                .annotations
                .get("value")
                .and_then(|v| v.trim().parse().ok());
        }
        let mut common: Option<Labels> = None;
        for m in &inc.alerts {
            let Some(r) = self.alerts.get(&m.fingerprint.get()) else {
                continue;
            };
            match common.as_mut() {
                None => common = Some(r.labels.clone()),
                Some(c) => {
                    c.retain(|k, v| r.labels.get(k) == Some(v));
                    if c.is_empty() {
                        break;
                    }
                }
            }
        }
        if let Some(c) = common {
            inc.common_labels = c;
        }
        let firing = inc
            .alerts
            .iter()
            .filter(|m| m.status == AlertStatus::Firing)
            .count();
        inc.title = title(
            inc,
            inc.alerts
                .iter()
                .find(|m| Some(m.fingerprint) == inc.root_cause),
        );
        inc.recommended_runbooks = recommended_runbooks(&similar);
        inc.similar = similar;
        let resolved = firing == 0 && inc.is_open();
        if resolved {
            inc.status = IncidentStatus::Resolved;
            inc.resolved_ms = Some(now);
            // Every group mapped to it is one of its groups (see `correlate`, `merge`).
            for g in &inc.groups {
                if self.group_incident.get(g).is_some_and(|v| v == id) {
                    self.group_incident.remove(g);
                }
            }
            out.event(id, now, "resolved", "every alert resolved".into());
        }
        out.touch(id);
        if resolved {
            self.open -= 1;
            self.ix_remove(id);
            self.past_insert(id);
        }
    }
}
