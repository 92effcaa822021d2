//! The alert pipeline: dedup, grouping, silences, inhibition, correlation into
//! incidents. Pure and synchronous: callers pass the time and persist what changed.
//!
//! Grouping follows Alertmanager: a new group waits `group_wait` before its first
//! flush; after that it is looked at every `group_interval` and flushed when its set
//! of (unsuppressed) alerts or their states changed, or — when nothing changed but
//! alerts still fire — once `repeat_interval` has passed since the last flush.
//! A flush is what reaches correlation: the group folds into an incident.

mod aggregate;
mod correlate;
mod group;
mod lifecycle;
#[cfg(test)]
mod scan;
mod similar;
mod suppress;
#[cfg(test)]
mod tests;
mod tick;
mod topology;

use aggregate::*;
pub use group::GroupTiming;
use group::*;
use suppress::*;
pub use topology::Topology;

use super::*;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use vigil_bundle::model::Alerting;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub received: u64,
    pub deduplicated: u64,
    pub resolved: u64,
    pub silenced: u64,
    pub inhibited: u64,
    pub groups_flushed: u64,
    pub incidents_opened: u64,
}

/// What correlation keeps about an open incident to relate new groups to it.
#[derive(Debug, Default)]
struct IncIndex {
    /// `label=value` for the correlation labels of its alerts.
    tokens: HashSet<String>,
    services: HashSet<String>,
    cluster: Option<String>,
}

/// What a tick changed, for the caller to persist and act on.
#[derive(Debug, Default)]
pub struct TickResult {
    pub flushed_groups: usize,
    /// Groups whose timing changed (to persist), and groups that are gone.
    pub changed_groups: Vec<GroupTiming>,
    pub removed_groups: Vec<Fingerprint>,
    /// Incidents created or changed, in the order they changed.
    pub changed_incidents: Vec<String>,
    pub events: Vec<(String, IncidentEvent)>,
    pub changed_alerts: Vec<AlertRecord>,
    /// Work that was due was left for the next call ([`Engine::tick_bounded`]).
    pub more: bool,
    /// `changed_incidents` as a set, so a large tick does not scan its own list.
    touched: HashSet<String>,
}

impl TickResult {
    fn touch(&mut self, id: &str) {
        if self.touched.insert(id.to_string()) {
            self.changed_incidents.push(id.to_string());
        }
    }
    fn event(&mut self, id: &str, now: i64, kind: &str, detail: String) {
        self.touch(id);
        self.events.push((
            id.to_string(),
            IncidentEvent {
                seq: 0,
                ts_ms: now,
                kind: kind.to_string(),
                detail,
            },
        ));
    }
}

const SCOPE_LABEL: &str = "cluster";

/// The 500th and 501st most recent past incidents (see [`Engine::similar_to`]).
type PastBounds = (Option<String>, Option<String>);

#[derive(Debug)]
pub struct Engine {
    cfg: Alerting,
    topo: Topology,
    alerts: HashMap<u64, AlertRecord>,
    groups: HashMap<u64, Group>,
    silences: Vec<Silence>,
    incidents: BTreeMap<String, Incident>,
    index: HashMap<String, IncIndex>,
    group_incident: HashMap<String, String>,
    next_incident: u64,
    pub stats: Stats,
    /// Groups by when they are next looked at, so a tick takes only the due ones.
    due: BTreeSet<(i64, u64)>,
    /// Firing alerts by when they end (`endsAt`, or `resolve_timeout` after they were
    /// last seen), so a tick resolves only those.
    expiry: BTreeSet<(i64, u64)>,
    /// `index` inverted: open incidents by correlation token and by service, so a
    /// group's correlation looks at its candidates only.
    by_token: HashMap<String, HashSet<String>>,
    by_service: HashMap<String, HashSet<String>>,
    open_sets: HashMap<String, OpenSets>,
    /// Member fingerprint → the open incidents with aggregates that hold it, so that
    /// an alert record coming or going reaches them.
    owners: HashMap<u64, Vec<Arc<str>>>,
    /// Past incidents (resolved, not merged), and by similarity token.
    past: BTreeSet<String>,
    past_by_token: HashMap<String, BTreeSet<String>>,
    past_bounds: Option<PastBounds>,
    /// Per inhibition rule, the `equal` values of firing unsilenced source alerts,
    /// counted, kept as alerts change instead of recomputed from all alerts per tick.
    inhibit_sources: Vec<HashMap<Vec<String>, usize>>,
    /// What silencing changed in those counts since the tick in progress began (at
    /// `tick_at`): every group of one tick, over however many turns, is judged
    /// against the sources as they were when it began.
    tick_deltas: Vec<HashMap<Vec<String>, i64>>,
    tick_at: Option<i64>,
    open: usize,
    /// Members from which an incident keeps aggregates ([`AGG_MIN_MEMBERS`]; tests
    /// lower it to use them for small incidents too).
    agg_min: usize,
    /// Tests: correlate with the scans the indexes replaced, as an oracle.
    #[cfg(test)]
    scan: bool,
}

/// When a firing alert ends by itself (none for a resolved one).
fn deadline(r: &AlertRecord, fp: u64, timeout: i64) -> Option<(i64, u64)> {
    (r.status == AlertStatus::Firing).then(|| {
        (
            r.ends_at_ms
                .unwrap_or(r.last_seen_ms.saturating_add(timeout)),
            fp,
        )
    })
}

impl Engine {
    pub fn new(cfg: Alerting, services: &BTreeMap<String, Vec<String>>) -> Engine {
        let rules = cfg.inhibit_rules.len();
        Engine {
            cfg,
            topo: Topology::new(services),
            alerts: HashMap::new(),
            groups: HashMap::new(),
            silences: Vec::new(),
            incidents: BTreeMap::new(),
            index: HashMap::new(),
            group_incident: HashMap::new(),
            next_incident: 1,
            stats: Stats::default(),
            due: BTreeSet::new(),
            expiry: BTreeSet::new(),
            by_token: HashMap::new(),
            by_service: HashMap::new(),
            open_sets: HashMap::new(),
            owners: HashMap::new(),
            past: BTreeSet::new(),
            past_by_token: HashMap::new(),
            past_bounds: None,
            inhibit_sources: vec![HashMap::new(); rules],
            tick_deltas: vec![HashMap::new(); rules],
            tick_at: None,
            open: 0,
            agg_min: AGG_MIN_MEMBERS,
            #[cfg(test)]
            scan: false,
        }
    }

    fn timeout_ms(&self) -> i64 {
        self.cfg.resolve_timeout.as_std().as_millis() as i64
    }

    /// Adds a correlation token to an open incident's index.
    fn ix_token(&mut self, id: &str, tok: String) {
        let ix = self.index.entry(id.to_string()).or_default();
        if !ix.tokens.contains(&tok) {
            self.by_token
                .entry(tok.clone())
                .or_default()
                .insert(id.to_string());
            ix.tokens.insert(tok);
        }
    }

    fn ix_service(&mut self, id: &str, s: String) {
        let ix = self.index.entry(id.to_string()).or_default();
        if !ix.services.contains(&s) {
            self.by_service
                .entry(s.clone())
                .or_default()
                .insert(id.to_string());
            ix.services.insert(s);
        }
    }

    /// Takes an incident out of correlation (resolved or merged).
    fn ix_remove(&mut self, id: &str) -> IncIndex {
        let ix = self.index.remove(id).unwrap_or_default();
        for t in &ix.tokens {
            if let Some(ids) = self.by_token.get_mut(t) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_token.remove(t);
                }
            }
        }
        for s in &ix.services {
            if let Some(ids) = self.by_service.get_mut(s) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_service.remove(s);
                }
            }
        }
        self.drop_open_sets(id);
        ix
    }

    fn drop_open_sets(&mut self, id: &str) {
        if let Some(sets) = self.open_sets.remove(id)
            && sets.agg.is_some()
        {
            own(&mut self.owners, &sets, false);
        }
    }

    fn ensure_open_sets(&mut self, id: &str) {
        if !self.open_sets.contains_key(id)
            && let Some(inc) = self.incidents.get(id)
        {
            self.open_sets.insert(id.to_string(), OpenSets::of(inc));
        }
    }

    fn schedule(&mut self, old: Option<(i64, u64)>, new: Option<(i64, u64)>) {
        if old != new {
            if let Some(k) = old {
                self.expiry.remove(&k);
            }
            if let Some(k) = new {
                self.expiry.insert(k);
            }
        }
    }

    pub fn config(&self) -> &Alerting {
        &self.cfg
    }

    /// Restores state from the store after a restart: alerts still firing regroup
    /// (and rejoin their incident through its group keys).
    pub fn restore(
        &mut self,
        alerts: Vec<AlertRecord>,
        incidents: Vec<Incident>,
        silences: Vec<Silence>,
        now: i64,
    ) {
        self.silences = silences;
        for inc in incidents {
            if let Some(n) = inc
                .id
                .strip_prefix("inc-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.next_incident = self.next_incident.max(n + 1);
            }
            let id = inc.id.clone();
            let open = inc.is_open();
            if open {
                for g in &inc.groups {
                    self.group_incident.insert(g.clone(), id.clone());
                }
            }
            let services = inc.services.clone();
            let cluster = inc.common_labels.get(SCOPE_LABEL).cloned();
            if let Some(old) = self.incidents.insert(id.clone(), inc)
                && old.is_open()
            {
                self.open -= 1;
            }
            if open {
                self.open += 1;
                self.index.entry(id.clone()).or_default().cluster = cluster;
                for s in services {
                    self.ix_service(&id, s);
                }
            } else {
                self.past_insert(&id);
            }
        }
        let timeout = self.timeout_ms();
        // A record stored under another spelling of its fingerprint is stored again
        // under the usual one when it changes: of one alert's records, the one seen
        // last (the later one of equals) is its state.
        let mut latest: HashMap<u64, (i64, usize)> = HashMap::with_capacity(alerts.len());
        for (i, rec) in alerts.iter().enumerate() {
            let e = latest
                .entry(rec.fingerprint.get())
                .or_insert((rec.last_seen_ms, i));
            if rec.last_seen_ms >= e.0 {
                *e = (rec.last_seen_ms, i);
            }
        }
        for (i, rec) in alerts.into_iter().enumerate() {
            let fp = rec.fingerprint.get();
            if rec.status == AlertStatus::Resolved || latest.get(&fp).is_some_and(|&(_, j)| j != i)
            {
                continue;
            }
            if let Some(id) = &rec.incident
                && self.index.contains_key(id)
            {
                let id = id.clone();
                for l in self.cfg.correlation_labels.clone() {
                    if let Some(v) = rec.labels.get(&l) {
                        self.ix_token(&id, format!("{l}={v}"));
                    }
                }
            }
            let (gk, key) = self.group_key(&rec.labels, fp);
            self.join_group(gk, key, fp, now);
            if let Some(old) = self.alerts.remove(&fp) {
                self.schedule(deadline(&old, fp, timeout), None);
                if may_inhibit(&old) {
                    count_source(
                        &self.cfg.inhibit_rules,
                        &mut self.inhibit_sources,
                        &old.labels,
                        false,
                    );
                }
            }
            self.schedule(None, deadline(&rec, fp, timeout));
            if may_inhibit(&rec) {
                count_source(
                    &self.cfg.inhibit_rules,
                    &mut self.inhibit_sources,
                    &rec.labels,
                    true,
                );
            }
            self.alerts.insert(fp, rec);
        }
        // What was derived from incidents and alerts replaced here is built again
        // when first needed.
        self.open_sets.clear();
        self.owners.clear();
    }

    pub fn alert(&self, fp: u64) -> Option<&AlertRecord> {
        self.alerts.get(&fp)
    }

    pub fn alerts(&self) -> impl Iterator<Item = &AlertRecord> {
        self.alerts.values()
    }

    pub fn alert_count(&self) -> usize {
        self.alerts.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn incidents(&self) -> impl DoubleEndedIterator<Item = &Incident> {
        self.incidents.values()
    }

    pub fn incident(&self, id: &str) -> Option<&Incident> {
        self.incidents.get(id)
    }

    pub fn open_incidents(&self) -> usize {
        self.open
    }
}
