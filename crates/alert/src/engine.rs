//! The alert pipeline: dedup, grouping, silences, inhibition, correlation into
//! incidents. Pure and synchronous: callers pass the time and persist what changed.
//!
//! Grouping follows Alertmanager: a new group waits `group_wait` before its first
//! flush; after that it is looked at every `group_interval` and flushed when its set
//! of (unsuppressed) alerts or their states changed, or — when nothing changed but
//! alerts still fire — once `repeat_interval` has passed since the last flush.
//! A flush is what reaches correlation: the group folds into an incident.

use super::*;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use vigil_bundle::model::Alerting;

/// The service dependency map, with its transitive closure.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// service → every service it depends on, directly or not.
    deps: HashMap<String, HashSet<String>>,
    /// service → every service that depends on it, directly or not (`deps` reversed),
    /// so that correlation looks up a service's neighbours instead of testing all pairs.
    dependents: HashMap<String, HashSet<String>>,
}

impl Topology {
    pub fn new(direct: &BTreeMap<String, Vec<String>>) -> Topology {
        let mut deps = HashMap::new();
        for start in direct.keys() {
            let mut seen = HashSet::new();
            let mut stack: Vec<&String> = direct
                .get(start)
                .map(|d| d.iter().collect())
                .unwrap_or_default();
            while let Some(s) = stack.pop() {
                if s != start
                    && seen.insert(s.clone())
                    && let Some(next) = direct.get(s)
                {
                    stack.extend(next.iter());
                }
            }
            deps.insert(start.clone(), seen);
        }
        let mut dependents: HashMap<String, HashSet<String>> = HashMap::new();
        for (a, ds) in &deps {
            for b in ds {
                dependents.entry(b.clone()).or_default().insert(a.clone());
            }
        }
        Topology { deps, dependents }
    }

    fn deps_of(&self, a: &str) -> Option<&HashSet<String>> {
        self.deps.get(a)
    }

    fn dependents_of(&self, a: &str) -> Option<&HashSet<String>> {
        self.dependents.get(a)
    }

    /// Every service `related` to `a`: itself, what it depends on, what depends on it.
    fn neighbours<'a>(&'a self, a: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(a)
            .chain(self.deps_of(a).into_iter().flatten().map(String::as_str))
            .chain(
                self.dependents_of(a)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
    }

    /// Whether `a` depends on `b`, directly or through others.
    pub fn depends_on(&self, a: &str, b: &str) -> bool {
        self.deps.get(a).is_some_and(|d| d.contains(b))
    }

    pub fn related(&self, a: &str, b: &str) -> bool {
        a == b || self.depends_on(a, b) || self.depends_on(b, a)
    }
}

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

#[derive(Debug)]
struct Group {
    key: String,
    members: BTreeSet<u64>,
    next_flush_ms: i64,
    flushed: bool,
    last_state: u64,
    last_sent_ms: i64,
}

/// A group's notification timing, persisted so that a restart keeps Alertmanager's
/// semantics: a group already told waits for `group_interval` (or
/// `repeat_interval`) instead of flushing again after a fresh `group_wait`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTiming {
    /// The group's hash (hex), as alerts' group keys are computed.
    pub group: String,
    pub next_flush_ms: i64,
    pub flushed: bool,
    pub last_state: u64,
    pub last_sent_ms: i64,
}

impl Group {
    fn timing(&self, gk: u64) -> GroupTiming {
        GroupTiming {
            group: fingerprint_hex(gk),
            next_flush_ms: self.next_flush_ms,
            flushed: self.flushed,
            last_state: self.last_state,
            last_sent_ms: self.last_sent_ms,
        }
    }
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
    pub removed_groups: Vec<String>,
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
const MAX_PAST_FOR_SIMILARITY: usize = 500;
/// Below this many members an incident is recomputed from a scan, which costs about
/// what keeping aggregates for it would.
const AGG_MIN_MEMBERS: usize = 64;

/// An open incident's members and groups as sets, so that folding a group into a
/// large incident does not scan its lists, and what [`Engine::recompute`] derives
/// from its members, kept as they change. Built when first needed.
#[derive(Debug)]
struct OpenSets {
    id: Arc<str>,
    /// Member fingerprint → position in `Incident::alerts` (the first one).
    pos: HashMap<u64, usize>,
    /// The same for fingerprints not spelled as [`fingerprint_hex`] spells them
    /// (only from a store written otherwise).
    odd: HashMap<String, usize>,
    groups: HashSet<String>,
    /// Every member is spelled as [`fingerprint_hex`] spells it, and held once: only
    /// then do the aggregates say what a scan of the members says.
    exact: bool,
    /// Built by a recompute once the incident is large enough to be worth it, while
    /// `exact`; dropped when the full recompute takes over.
    agg: Option<Agg>,
}

/// A member's place in the root-cause order: earliest start, then the higher
/// severity, then the first in `Incident::alerts` (as `min_by_key` picks).
type RootKey = (i64, Reverse<u8>, usize);

/// What [`Engine::recompute`] needs from all members of an open incident.
#[derive(Debug, Default)]
struct Agg {
    firing: usize,
    /// Firing members by service, and those without one, in root-cause order.
    live: BTreeMap<String, BTreeSet<RootKey>>,
    live_none: BTreeSet<RootKey>,
    /// The highest severity of all members, the last of equals: (rank, position).
    severity: Option<(u8, usize)>,
    /// Positions of the members whose role is root cause.
    roots: Vec<usize>,
    /// [`incident_tokens`] of the members.
    tokens: HashSet<String>,
    /// Over the members whose alert is held (in `Engine::alerts`): how many, and per
    /// label name how many have it and its values, counted. A label is common when
    /// all have it with one value.
    held: usize,
    names: HashMap<String, (usize, HashMap<String, usize>)>,
}

/// A fingerprint spelled as [`fingerprint_hex`] spells it, as a number.
fn canonical(s: &str) -> Option<u64> {
    if s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        u64::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl OpenSets {
    fn of(inc: &Incident) -> OpenSets {
        let mut sets = OpenSets {
            id: Arc::from(inc.id.as_str()),
            pos: HashMap::with_capacity(inc.alerts.len()),
            odd: HashMap::new(),
            groups: inc.groups.iter().cloned().collect(),
            exact: true,
            agg: None,
        };
        for (i, m) in inc.alerts.iter().enumerate() {
            if sets.find(&m.fingerprint).is_some() {
                sets.exact = false;
            } else {
                sets.place(&m.fingerprint, i);
            }
        }
        sets
    }

    fn find(&self, fingerprint: &str) -> Option<usize> {
        match canonical(fingerprint) {
            Some(fp) => self.pos.get(&fp).copied(),
            None => self.odd.get(fingerprint).copied(),
        }
    }

    /// Files a new member at position `i`; its number when spelled canonically.
    fn place(&mut self, fingerprint: &str, i: usize) -> Option<u64> {
        match canonical(fingerprint) {
            Some(fp) => {
                self.pos.insert(fp, i);
                Some(fp)
            }
            None => {
                self.odd.insert(fingerprint.to_string(), i);
                self.exact = false;
                None
            }
        }
    }
}

impl Agg {
    /// From a scan of the members, and of which of them `alerts` holds.
    fn of(inc: &Incident, sets: &OpenSets, alerts: &HashMap<u64, AlertRecord>) -> Agg {
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
    fn add(&mut self, m: &Member, i: usize) {
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
    fn live(&mut self, m: &Member, i: usize, rank: u8, add: bool) {
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
    fn hold(&mut self, labels: &Labels, add: bool) {
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
    fn common(&self) -> Option<Labels> {
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
fn own(owners: &mut HashMap<u64, Vec<Arc<str>>>, sets: &OpenSets, add: bool) {
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
fn held_changed(
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

/// Whether an alert can inhibit others (before the rules' source matchers).
fn may_inhibit(r: &AlertRecord) -> bool {
    r.status == AlertStatus::Firing && r.silenced_by.is_empty()
}

/// Adds (or takes away) an alert's part in the inhibition sources.
fn count_source(
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

    /// Files a resolved, unmerged incident for similarity search.
    fn past_insert(&mut self, id: &str) {
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

    fn past_remove(&mut self, id: &str) {
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
        for rec in alerts {
            let Ok(fp) = u64::from_str_radix(&rec.fingerprint, 16) else {
                continue;
            };
            if rec.status == AlertStatus::Resolved {
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

    /// Puts back the timing of groups [`Engine::restore`] rebuilt from their alerts.
    pub fn restore_groups(&mut self, timings: Vec<GroupTiming>) {
        for t in timings {
            let Ok(gk) = u64::from_str_radix(&t.group, 16) else {
                continue;
            };
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

    fn group_key(&self, labels: &Labels, fp: u64) -> (u64, String) {
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
                    fingerprint: fingerprint_hex(fp),
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
    fn join_group(&mut self, gk: u64, key: String, fp: u64, now: i64) {
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

    fn tick_turn(&mut self, now: i64, budget: usize) -> TickResult {
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
        let mut removed: HashSet<String> = HashSet::new();
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
                    let hex = fingerprint_hex(gk);
                    removed.insert(hex.clone());
                    out.removed_groups.push(hex);
                }
            }
        }
        if !removed.is_empty() {
            out.changed_groups.retain(|t| !removed.contains(&t.group));
        }
        out
    }

    fn correlate(&mut self, gk: u64, now: i64, out: &mut TickResult) {
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
            match sets.find(&r.fingerprint) {
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
                        fingerprint: r.fingerprint.clone(),
                        alertname: r.alertname().to_string(),
                        service: r.labels.get("service").cloned(),
                        status: r.status,
                        role: Role::Symptom,
                        starts_at_ms: r.starts_at_ms,
                        severity: r.labels.get("severity").cloned().unwrap_or_default(),
                    };
                    if let Some(n) = sets.place(&r.fingerprint, i)
                        && let Some(agg) = sets.agg.as_mut()
                    {
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
    fn related_incidents(&self, firing: &[u64], now: i64) -> Vec<String> {
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

    fn open_incident(&mut self, now: i64, out: &mut TickResult) -> String {
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
    fn merge(&mut self, into: &str, from: &str, now: i64, out: &mut TickResult) {
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
            if let Ok(fp) = u64::from_str_radix(&m.fingerprint, 16)
                && let Some(r) = self.alerts.get_mut(&fp)
            {
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
                if sets.find(&m.fingerprint).is_none() {
                    let i = dst.alerts.len();
                    if let Some(fp) = sets.place(&m.fingerprint, i)
                        && let Some(agg) = sets.agg.as_mut()
                    {
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

    /// Root cause, severity, labels, title, status and similar incidents, from the
    /// aggregates of the members: what [`Engine::recompute_full`] derives from all of
    /// them, at the cost of what changed. When no member fires (the incident
    /// resolves), or the aggregates cannot be exact, the full recompute runs.
    fn recompute(&mut self, id: &str, now: i64, out: &mut TickResult) {
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
            .map(|m| m.fingerprint.clone());
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
            if let (Some(fp), Some(m)) = (&root, root_pos.and_then(|i| inc.alerts.get(i))) {
                let name = member_name(m);
                out.event(
                    id,
                    now,
                    "root_cause",
                    format!("probable root cause: {name} ({fp})"),
                );
            }
            inc.root_cause = root.clone();
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
        let root_fp = root.as_ref().and_then(|h| canonical(h));
        if let Some(r) = root_fp.and_then(|fp| self.alerts.get(&fp)) {
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
    fn recompute_full(&mut self, id: &str, now: i64, out: &mut TickResult) {
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
            .map(|m| m.fingerprint.clone());
        let severity = inc
            .alerts
            .iter()
            .map(|m| m.severity.as_str())
            .max_by_key(|s| severity_rank(s))
            .unwrap_or("")
            .to_string();
        if root != inc.root_cause {
            for m in inc.alerts.iter_mut() {
                m.role = if Some(&m.fingerprint) == root.as_ref() {
                    Role::RootCause
                } else {
                    Role::Symptom
                };
            }
            if let Some(fp) = &root {
                let name = inc
                    .alerts
                    .iter()
                    .find(|m| &m.fingerprint == fp)
                    .map(member_name)
                    .unwrap_or_default();
                out.event(
                    id,
                    now,
                    "root_cause",
                    format!("probable root cause: {name} ({fp})"),
                );
            }
            inc.root_cause = root.clone();
        }
        inc.root_service = root_service;
        if severity != inc.severity {
            out.event(id, now, "severity", format!("severity {severity}"));
            inc.severity = severity;
        }
        inc.services = services.iter().map(|s| s.to_string()).collect();
        // Labels: the root alert's; common labels: those every member alert shares.
        let root_fp = root.as_ref().and_then(|h| u64::from_str_radix(h, 16).ok());
        if let Some(r) = root_fp.and_then(|fp| self.alerts.get(&fp)) {
            inc.labels = r.labels.clone();
            inc.annotations = r.annotations.clone();
            inc.value = r
                .annotations
                .get("value")
                .and_then(|v| v.trim().parse().ok());
        }
        let mut common: Option<Labels> = None;
        for m in &inc.alerts {
            let Some(r) = u64::from_str_radix(&m.fingerprint, 16)
                .ok()
                .and_then(|fp| self.alerts.get(&fp))
            else {
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
                .find(|m| Some(&m.fingerprint) == inc.root_cause.as_ref()),
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

    /// Past (resolved) incidents most like this one: Jaccard similarity of their
    /// `alertname` and `service` values, among the 500 most recent past incidents.
    /// Only those sharing a token can score, so only those are looked at: the
    /// inverted index gives them, its ranges cut at the 500th most recent.
    fn similar_to(&mut self, id: &str) -> Vec<Similar> {
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

/// The scans the indexes replaced, kept as the oracle they are tested against.
#[cfg(test)]
impl Engine {
    fn related_incidents_scan(&self, firing: &[u64], now: i64) -> Vec<String> {
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
    fn check_against_scans(&self, now: i64) {
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

    fn similar_to_scan(&self, id: &str) -> Vec<Similar> {
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

/// How much past incident `p` is like one with `tokens`, when enough (≥ 0.3).
fn similarity(tokens: &HashSet<String>, p: &Incident) -> Option<Similar> {
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

/// An incident's title: its root cause's alert and service, and how many alerts and
/// services it holds.
fn title(inc: &Incident, root: Option<&Member>) -> String {
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
fn member_name(m: &Member) -> String {
    match &m.service {
        Some(s) => format!("{} on {s}", m.alertname),
        None => m.alertname.clone(),
    }
}

/// The runbooks that remediated similar past incidents, each once, most similar first.
fn recommended_runbooks(similar: &[Similar]) -> Vec<String> {
    let mut recommended: Vec<String> = Vec::new();
    for r in similar.iter().flat_map(|s| &s.runbooks) {
        if !recommended.contains(r) {
            recommended.push(r.clone());
        }
    }
    recommended
}

fn incident_tokens(inc: &Incident) -> HashSet<String> {
    let mut t = HashSet::new();
    for m in &inc.alerts {
        t.insert(format!("alertname={}", m.alertname));
        if let Some(s) = &m.service {
            t.insert(format!("service={s}"));
        }
    }
    t
}

fn equal_values(equal: &[String], labels: &Labels) -> Vec<String> {
    equal
        .iter()
        .map(|l| labels.get(l).cloned().unwrap_or_default())
        .collect()
}

/// Alertmanager's rule: muted when a firing source alert has the same `equal` values.
/// An alert that matches the source side of a rule is not muted by that rule.
/// `sources` are counted as they are now, `deltas` what this tick changed in them.
fn is_inhibited(
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

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_bundle::model::InhibitRule;
    use vigil_core::duration::Duration;

    fn a(name: &str, service: &str, severity: &str) -> IncomingAlert {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), name.into());
        labels.insert("service".into(), service.into());
        labels.insert("severity".into(), severity.into());
        IncomingAlert {
            labels,
            annotations: Labels::new(),
            status: AlertStatus::Firing,
            starts_at_ms: None,
            ends_at_ms: None,
            generator_url: String::new(),
        }
    }

    fn engine() -> Engine {
        let cfg = Alerting {
            group_wait: Duration::from_secs(10),
            group_interval: Duration::from_secs(60),
            repeat_interval: Duration::from_secs(600),
            resolve_timeout: Duration::from_secs(3600),
            inhibit_rules: vec![InhibitRule {
                source: vec![Matcher::parse("severity", "critical").unwrap()],
                target: vec![Matcher::parse("severity", "warning").unwrap()],
                equal: vec!["service".into()],
            }],
            ..Alerting::default()
        };
        Engine::new(cfg, &BTreeMap::new())
    }

    #[test]
    fn group_timing_survives_a_restart() {
        let cfg = Alerting {
            group_wait: vigil_core::duration::Duration::from_secs(30),
            group_interval: vigil_core::duration::Duration::from_secs(120),
            ..Alerting::default()
        };
        let mut a = Engine::new(cfg.clone(), &Default::default());
        let mut l = Labels::new();
        l.insert("alertname".into(), "Up".into());
        l.insert("service".into(), "db".into());
        let incoming = IncomingAlert {
            labels: l,
            annotations: Labels::new(),
            status: AlertStatus::Firing,
            starts_at_ms: Some(0),
            ends_at_ms: None,
            generator_url: String::new(),
        };
        a.ingest(incoming, 0);
        let told = a.tick(30_000);
        assert_eq!(told.flushed_groups, 1);
        let timings = told.changed_groups.clone();
        assert_eq!(timings.len(), 1);
        // A new process: the same alerts and the saved timing. Without the timing the
        // group would flush again at 60 s (a fresh group_wait); with it, it waits.
        let mut b = Engine::new(cfg, &Default::default());
        b.restore(
            a.alerts().cloned().collect(),
            a.incidents().cloned().collect(),
            Vec::new(),
            31_000,
        );
        b.restore_groups(timings);
        assert_eq!(
            b.tick(61_000).flushed_groups,
            0,
            "no repeat flush after the restart"
        );
        assert_eq!(b.tick(150_000).changed_groups[0].next_flush_ms, 270_000);
    }

    #[test]
    fn duplicates_fold_and_groups_wait_then_flush_on_change_or_repeat() {
        let mut e = engine();
        let fp = e.ingest(a("X", "api", "info"), 0);
        assert_eq!(e.ingest(a("X", "api", "info"), 1_000), fp);
        assert_eq!(e.alert(fp).unwrap().count, 2);
        assert_eq!(e.stats.deduplicated, 1);
        assert_eq!(e.tick(9_999).flushed_groups, 0, "group_wait not over");
        let r = e.tick(10_000);
        assert_eq!(r.flushed_groups, 1);
        assert_eq!(r.changed_incidents.len(), 1);
        // Nothing changed: no flush at the next group_interval…
        e.ingest(a("X", "api", "info"), 20_000);
        assert_eq!(e.tick(70_000).flushed_groups, 0);
        // …a change flushes at the next interval…
        e.ingest(a("Y", "api", "info"), 75_000);
        assert_eq!(
            e.tick(80_000).flushed_groups,
            0,
            "Y is in a new group (alertname) that waits"
        );
        assert_eq!(
            e.tick(85_000).flushed_groups,
            1,
            "Y's own group_wait is over"
        );
        // …and repeat_interval re-sends an unchanged, firing group.
        e.ingest(a("X", "api", "info"), 600_000);
        assert_eq!(e.tick(610_000).flushed_groups, 1);
        assert_eq!(e.incidents().count(), 1, "same service: one incident");
    }

    /// One step of a random alert history.
    #[derive(Clone, Debug)]
    enum Op {
        Alert {
            name: u8,
            service: u8,
            instance: u8,
            cluster: Option<u8>,
            severity: u8,
            resolved: bool,
        },
        Wait(i64),
        /// `n` alerts of one name and service in cluster `c0`, instances `from..from+n`:
        /// groups that all correlate into one large incident.
        Burst {
            name: u8,
            service: u8,
            from: u16,
            n: u16,
            resolved: bool,
        },
        /// A manual status change of the n-th incident (resolve or acknowledge).
        Status(usize, bool),
        Silence(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u8..4, 0u8..6, 0u8..3, proptest::option::of(0u8..2), 0u8..3, proptest::bool::weighted(0.25))
                .prop_map(|(name, service, instance, cluster, severity, resolved)| Op::Alert {
                    name, service, instance, cluster, severity, resolved
                }),
            3 => (1i64..120_000).prop_map(Op::Wait),
            1 => (0usize..8, any::<bool>()).prop_map(|(n, r)| Op::Status(n, r)),
            1 => (0u8..6).prop_map(Op::Silence),
        ]
    }

    /// Histories where many groups fold into one incident, and members resolve,
    /// leave and fire again.
    fn op_large() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            5 => (0u8..3, 0u8..6, 0u16..100, 1u16..40, proptest::bool::weighted(0.3))
                .prop_map(|(name, service, from, n, resolved)| Op::Burst {
                    name, service, from, n, resolved
                }),
            3 => (1i64..120_000).prop_map(Op::Wait),
            2 => op(),
        ]
    }

    fn oracle_pair() -> (Engine, Engine) {
        let cfg = Alerting {
            group_wait: Duration::from_secs(10),
            group_interval: Duration::from_secs(30),
            repeat_interval: Duration::from_secs(120),
            resolve_timeout: Duration::from_secs(90),
            correlation_window: Duration::from_secs(100),
            inhibit_rules: vec![InhibitRule {
                source: vec![Matcher::parse("severity", "critical").unwrap()],
                target: vec![Matcher::parse("severity", "warning").unwrap()],
                equal: vec!["service".into()],
            }],
            ..Alerting::default()
        };
        let mut topo = BTreeMap::new();
        topo.insert("s0".to_string(), vec!["s1".to_string()]);
        topo.insert("s1".to_string(), vec!["s2".to_string()]);
        topo.insert("s3".to_string(), vec!["s2".to_string()]);
        topo.insert("s4".to_string(), vec!["s5".to_string()]);
        topo.insert("s5".to_string(), vec!["s4".to_string()]);
        let indexed = Engine::new(cfg.clone(), &topo);
        let mut scan = Engine::new(cfg, &topo);
        scan.scan = true;
        (indexed, scan)
    }

    fn apply(e: &mut Engine, op: &Op, now: i64) -> String {
        match op {
            Op::Alert {
                name,
                service,
                instance,
                cluster,
                severity,
                resolved,
            } => {
                let sev = ["critical", "warning", "info"][usize::from(*severity)];
                let mut x = a(&format!("A{name}"), &format!("s{service}"), sev);
                x.labels.insert("instance".into(), format!("h{instance}"));
                if let Some(c) = cluster {
                    x.labels.insert("cluster".into(), format!("c{c}"));
                }
                if *resolved {
                    x.status = AlertStatus::Resolved;
                }
                format!("{:x}", e.ingest(x, now))
            }
            Op::Burst {
                name,
                service,
                from,
                n,
                resolved,
            } => {
                let mut fps = String::new();
                for i in *from..from + n {
                    let mut x = a(&format!("B{name}"), &format!("s{service}"), "warning");
                    x.labels.insert("instance".into(), format!("b{i}"));
                    x.labels.insert("cluster".into(), "c0".into());
                    if *resolved {
                        x.status = AlertStatus::Resolved;
                    }
                    fps.push_str(&format!("{:x} ", e.ingest(x, now)));
                }
                fps
            }
            Op::Wait(_) => {
                let r = e.tick(now);
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?} {}",
                    r.flushed_groups,
                    r.changed_groups,
                    r.removed_groups,
                    r.changed_incidents,
                    r.events,
                    r.changed_alerts,
                    r.more
                )
            }
            Op::Status(n, resolve) => {
                let id = e.incidents().nth(*n).map(|i| i.id.clone());
                let status = if *resolve {
                    IncidentStatus::Resolved
                } else {
                    IncidentStatus::Acknowledged
                };
                format!(
                    "{:?}",
                    id.and_then(|id| e.set_status(&id, status, "t", now))
                )
            }
            Op::Silence(service) => {
                e.add_silence(Silence {
                    id: format!("s{service}"),
                    matchers: vec![Matcher::parse("service", &format!("s{service}")).unwrap()],
                    starts_at_ms: now,
                    ends_at_ms: now + 60_000,
                    created_by: "t".into(),
                    comment: String::new(),
                    created_ms: now,
                });
                String::new()
            }
        }
    }

    fn state(e: &Engine) -> (String, Vec<String>, usize) {
        let incidents = serde_json::to_string(&e.incidents().collect::<Vec<_>>()).unwrap();
        let mut alerts: Vec<String> = e
            .alerts()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        alerts.sort();
        (incidents, alerts, e.open_incidents())
    }

    /// Runs `ops` on the indexed engine and on the scanning one, comparing every step,
    /// then again on both restored from what they hold.
    fn matches_the_scan(
        ops: &[Op],
        agg_min: usize,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let (mut fast, mut slow) = oracle_pair();
        fast.agg_min = agg_min;
        let mut now = 0i64;
        for op in ops {
            if let Op::Wait(d) = op {
                now += d;
            }
            proptest::prop_assert_eq!(apply(&mut fast, op, now), apply(&mut slow, op, now));
            proptest::prop_assert_eq!(state(&fast), state(&slow));
        }
        let (mut fast2, mut slow2) = oracle_pair();
        fast2.agg_min = agg_min;
        for (from, to) in [(&fast, &mut fast2), (&slow, &mut slow2)] {
            to.restore(
                from.alerts().cloned().collect(),
                from.incidents().cloned().collect(),
                from.silences().to_vec(),
                now,
            );
        }
        for op in ops {
            if let Op::Wait(d) = op {
                now += d;
            }
            proptest::prop_assert_eq!(apply(&mut fast2, op, now), apply(&mut slow2, op, now));
            proptest::prop_assert_eq!(state(&fast2), state(&slow2));
        }
        slow.check_against_scans(now);
        slow2.check_against_scans(now);
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// The indexed correlation (and the due and expiry queues, the inhibition
        /// counts, the incident aggregates) gives what the scans they replaced give,
        /// step by step — also after a restart from what was persisted.
        #[test]
        fn indexed_correlation_matches_the_scan(ops in proptest::collection::vec(op(), 1..80), agg_min in proptest::sample::select(vec![1, AGG_MIN_MEMBERS])) {
            matches_the_scan(&ops, agg_min)?;
        }

        /// The same where groups pile into one large incident whose members resolve,
        /// leave and fire again (the aggregates kept as members change).
        #[test]
        fn large_incidents_match_the_scan(ops in proptest::collection::vec(op_large(), 1..60), agg_min in proptest::sample::select(vec![1, AGG_MIN_MEMBERS])) {
            matches_the_scan(&ops, agg_min)?;
        }

        /// A tick in bounded turns ends where one tick ends.
        #[test]
        fn bounded_turns_end_where_one_tick_does(ops in proptest::collection::vec(op(), 1..80), budget in 1usize..6) {
            let (mut whole, _) = oracle_pair();
            let (mut turns, _) = oracle_pair();
            let mut now = 0i64;
            for op in &ops {
                match op {
                    Op::Wait(d) => {
                        now += d;
                        let one = whole.tick(now);
                        let mut flushed = 0;
                        loop {
                            let r = turns.tick_bounded(now, budget);
                            flushed += r.flushed_groups;
                            if !r.more {
                                break;
                            }
                        }
                        proptest::prop_assert_eq!(one.flushed_groups, flushed);
                    }
                    op => {
                        apply(&mut whole, op, now);
                        apply(&mut turns, op, now);
                    }
                }
                proptest::prop_assert_eq!(state(&whole), state(&turns));
            }
        }
    }

    /// Twenty groups of fifty alerts fold into one incident; members resolve, leave
    /// and fire again, a service is silenced, the engine restarts: the aggregates
    /// (kept, not rebuilt) give what the full recompute gives at every step.
    #[test]
    fn one_large_incident_matches_the_full_recompute() {
        let (mut fast, mut slow) = oracle_pair();
        let burst = |name: u8, service: u8, resolved: bool| Op::Burst {
            name,
            service,
            from: 0,
            n: 50,
            resolved,
        };
        let all = || (0..20).map(move |g| burst(g % 4, g % 6, false));
        // Alerts resolve unless seen within 90 s: every burst is sent again at 40 s,
        // which also brings back the two that resolved and left at 40 s.
        let mut ops: Vec<Op> = all().collect();
        ops.extend([Op::Wait(10_000), burst(1, 1, true), burst(2, 2, true)]);
        ops.push(Op::Wait(30_000));
        ops.extend(all());
        ops.extend([Op::Silence(3), Op::Wait(30_000)]);
        ops.extend([burst(0, 0, true), burst(3, 3, true), Op::Wait(30_000)]);
        ops.extend([burst(0, 0, false), Op::Wait(30_000)]);
        let mut now = 0;
        for op in &ops {
            if let Op::Wait(d) = op {
                now += d;
            }
            assert_eq!(apply(&mut fast, op, now), apply(&mut slow, op, now));
            assert_eq!(state(&fast), state(&slow));
        }
        let big = fast
            .incidents()
            .find(|i| i.is_open())
            .map(|i| (i.id.clone(), i.alerts.len()));
        let (id, members) = big.expect("one open incident");
        assert!(members >= 600, "{members} members");
        assert!(
            fast.open_sets.get(&id).is_some_and(|s| s.agg.is_some()),
            "kept by the aggregates"
        );
        matches_the_scan(&ops, AGG_MIN_MEMBERS).unwrap();
    }

    #[test]
    fn inhibition_and_silences_mute() {
        let mut e = engine();
        let warn = e.ingest(a("Latency", "db", "warning"), 0);
        let other = e.ingest(a("Latency", "api", "warning"), 0);
        e.ingest(a("DBDown", "db", "critical"), 0);
        e.add_silence(Silence {
            id: "s".into(),
            matchers: vec![Matcher::parse("service", "api").unwrap()],
            starts_at_ms: 0,
            ends_at_ms: 1_000_000,
            created_by: "t".into(),
            comment: String::new(),
            created_ms: 0,
        });
        e.tick(10_000);
        assert!(e.alert(warn).unwrap().inhibited);
        assert_eq!(e.alert(other).unwrap().silenced_by, vec!["s".to_string()]);
        let members: usize = e.incidents().map(|i| i.alerts.len()).sum();
        assert_eq!(members, 1, "only DBDown reaches an incident");
        // When the source resolves, the inhibition lifts: the warning joins the incident,
        // which resolves only when that resolves too.
        let mut r = a("DBDown", "db", "critical");
        r.status = AlertStatus::Resolved;
        e.ingest(r, 20_000);
        e.tick(80_000);
        assert!(!e.alert(warn).unwrap().inhibited);
        let holder = e.alert(warn).unwrap().incident.clone().unwrap();
        assert!(e.incident(&holder).unwrap().is_open());
        let mut r = a("Latency", "db", "warning");
        r.status = AlertStatus::Resolved;
        e.ingest(r, 90_000);
        e.tick(140_000);
        assert!(e.incidents().all(|i| i.status == IncidentStatus::Resolved));
    }
}
