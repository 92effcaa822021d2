//! The alert pipeline: dedup, grouping, silences, inhibition, correlation into
//! incidents. Pure and synchronous: callers pass the time and persist what changed.
//!
//! Grouping follows Alertmanager: a new group waits `group_wait` before its first
//! flush; after that it is looked at every `group_interval` and flushed when its set
//! of (unsuppressed) alerts or their states changed, or — when nothing changed but
//! alerts still fire — once `repeat_interval` has passed since the last flush.
//! A flush is what reaches correlation: the group folds into an incident.

use super::*;
use crate::runbook::model::Alerting;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The service dependency map, with its transitive closure.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// service → every service it depends on, directly or not.
    deps: HashMap<String, HashSet<String>>,
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
        Topology { deps }
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
}

impl TickResult {
    fn touch(&mut self, id: &str) {
        if !self.changed_incidents.iter().any(|i| i == id) {
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
}

impl Engine {
    pub fn new(cfg: Alerting, services: &BTreeMap<String, Vec<String>>) -> Engine {
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
            if inc.is_open() {
                for g in &inc.groups {
                    self.group_incident.insert(g.clone(), inc.id.clone());
                }
                let ix = self.index.entry(inc.id.clone()).or_default();
                ix.services.extend(inc.services.iter().cloned());
                ix.cluster = inc.common_labels.get(SCOPE_LABEL).cloned();
            }
            self.incidents.insert(inc.id.clone(), inc);
        }
        for rec in alerts {
            let Ok(fp) = u64::from_str_radix(&rec.fingerprint, 16) else {
                continue;
            };
            if rec.status == AlertStatus::Resolved {
                continue;
            }
            if let Some(id) = &rec.incident
                && let Some(ix) = self.index.get_mut(id)
            {
                for l in &self.cfg.correlation_labels {
                    if let Some(v) = rec.labels.get(l) {
                        ix.tokens.insert(format!("{l}={v}"));
                    }
                }
            }
            let (gk, key) = self.group_key(&rec.labels, fp);
            self.join_group(gk, key, fp, now);
            self.alerts.insert(fp, rec);
        }
    }

    /// Puts back the timing of groups [`Engine::restore`] rebuilt from their alerts.
    pub fn restore_groups(&mut self, timings: Vec<GroupTiming>) {
        for t in timings {
            let Ok(gk) = u64::from_str_radix(&t.group, 16) else {
                continue;
            };
            if let Some(g) = self.groups.get_mut(&gk) {
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
                let mut h: u64 = 0xcbf29ce484222325;
                for name in by {
                    let v = labels.get(name).map_or("", String::as_str);
                    for b in name.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
                        h ^= u64::from(b);
                        h = h.wrapping_mul(0x100000001b3);
                    }
                }
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
        match self.alerts.entry(fp) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                self.stats.deduplicated += 1;
                let r = e.get_mut();
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
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(AlertRecord {
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
            }
        }
        self.join_group(gk, key, fp, now);
        fp
    }

    /// Adds an alert to its group; a new group first flushes after `group_wait`.
    fn join_group(&mut self, gk: u64, key: String, fp: u64, now: i64) {
        let wait = self.cfg.group_wait.as_std().as_millis() as i64;
        self.groups
            .entry(gk)
            .or_insert_with(|| Group {
                key,
                members: BTreeSet::new(),
                next_flush_ms: now + wait,
                flushed: false,
                last_state: 0,
                last_sent_ms: 0,
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
        self.incidents.values().filter(|i| i.is_open()).count()
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
            self.index.remove(id);
        }
        let ev = IncidentEvent {
            seq: 0,
            ts_ms: now,
            kind: status.as_str().into(),
            detail: format!("{} → {}: {why}", before.as_str(), status.as_str()),
        };
        Some((inc.clone(), ev))
    }

    /// Records what was triggered for an incident.
    pub fn record_trigger(&mut self, id: &str, t: Triggered) -> Option<Incident> {
        let inc = self.incidents.get_mut(id)?;
        if t.mode == "live" && inc.status == IncidentStatus::Open {
            inc.status = IncidentStatus::Remediating;
        }
        // One entry per run: the outcome replaces what was recorded as it started
        // (or as it paused for an approval).
        let same_run = inc.executions.iter().position(|e| {
            e.runbook == t.runbook
                && (e.status == super::service::STARTING
                    || (e.execution.is_some() && e.execution == t.execution))
        });
        match same_run {
            Some(i) if t.status != super::service::STARTING => inc.executions[i] = t,
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
        found: &HashMap<(String, String), (String, String)>,
    ) -> Vec<Incident> {
        let mut changed = Vec::new();
        for inc in self.incidents.values_mut() {
            let before = inc.executions.clone();
            let id = inc.id.clone();
            inc.executions.retain_mut(|e| {
                let pending = e.status == super::service::STARTING
                    || matches!(e.status.as_str(), "running" | "awaiting_approval");
                if !pending {
                    return true;
                }
                match found.get(&(id.clone(), e.runbook.clone())) {
                    Some((exec, status)) => {
                        e.execution = Some(exec.clone());
                        e.status = status.clone();
                        true
                    }
                    None => e.status != super::service::STARTING,
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
        let mut out = TickResult::default();
        let timeout = self.cfg.resolve_timeout.as_std().as_millis() as i64;
        // Alerts whose end passed, or that were not refreshed within resolve_timeout.
        for r in self.alerts.values_mut() {
            if r.status == AlertStatus::Firing {
                let ended = match r.ends_at_ms {
                    Some(e) => e <= now,
                    None => r.last_seen_ms + timeout <= now,
                };
                if ended {
                    r.status = AlertStatus::Resolved;
                    r.ends_at_ms.get_or_insert(now);
                    self.stats.resolved += 1;
                    out.changed_alerts.push(r.clone());
                }
            }
        }
        let due: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= now)
            .map(|(k, _)| *k)
            .collect();
        if due.is_empty() {
            return out;
        }
        let inhibit_sources = self.inhibition_sources();
        let active: Vec<&Silence> = self.silences.iter().filter(|s| s.is_active(now)).collect();
        let interval = self.cfg.group_interval.as_std().as_millis() as i64;
        let repeat = self.cfg.repeat_interval.as_std().as_millis() as i64;
        let mut flushes = Vec::new();
        for gk in due {
            let Some(g) = self.groups.get_mut(&gk) else {
                continue;
            };
            let mut state: u64 = 0xcbf29ce484222325;
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
                    && is_inhibited(&self.cfg.inhibit_rules, &inhibit_sources, &r.labels);
                if silenced_by != r.silenced_by || inhibited != r.inhibited {
                    if !silenced_by.is_empty() && r.silenced_by.is_empty() {
                        self.stats.silenced += 1;
                    }
                    if inhibited && !r.inhibited {
                        self.stats.inhibited += 1;
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
                for b in fp
                    .to_be_bytes()
                    .into_iter()
                    .chain([u8::from(r.status == AlertStatus::Firing)])
                {
                    state ^= u64::from(b);
                    state = state.wrapping_mul(0x100000001b3);
                }
            }
            g.next_flush_ms = now + interval;
            let send = if !g.flushed {
                visible > 0
            } else {
                state != g.last_state || (firing && now - g.last_sent_ms >= repeat)
            };
            if send {
                g.flushed = true;
                g.last_state = state;
                g.last_sent_ms = now;
                flushes.push(gk);
            }
            out.changed_groups.push(g.timing(gk));
        }
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
                    self.alerts.remove(&fp);
                }
                if g.members.is_empty() {
                    self.groups.remove(&gk);
                    let hex = fingerprint_hex(gk);
                    out.changed_groups.retain(|t| t.group != hex);
                    out.removed_groups.push(hex);
                }
            }
        }
        out
    }

    /// For each inhibition rule, the `equal`-label values of firing alerts matching its source.
    fn inhibition_sources(&self) -> Vec<HashSet<Vec<String>>> {
        self.cfg
            .inhibit_rules
            .iter()
            .map(|rule| {
                self.alerts
                    .values()
                    .filter(|r| {
                        r.status == AlertStatus::Firing
                            && r.silenced_by.is_empty()
                            && rule.source.iter().all(|m| m.matches(&r.labels))
                    })
                    .map(|r| equal_values(&rule.equal, &r.labels))
                    .collect()
            })
            .collect()
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
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        if !inc.groups.contains(&key) {
            inc.groups.push(key);
        }
        let ix = self.index.entry(id.clone()).or_default();
        let mut added = Vec::new();
        for fp in &members {
            let Some(r) = self.alerts.get_mut(fp) else {
                continue;
            };
            if r.incident.as_deref() != Some(id.as_str()) {
                r.incident = Some(id.clone());
                out.changed_alerts.push(r.clone());
            }
            let hex = &r.fingerprint;
            match inc.alerts.iter_mut().find(|m| &m.fingerprint == hex) {
                Some(m) => {
                    m.status = r.status;
                    m.starts_at_ms = r.starts_at_ms;
                }
                None => {
                    added.push(r.alertname().to_string());
                    inc.alerts.push(Member {
                        fingerprint: hex.clone(),
                        alertname: r.alertname().to_string(),
                        service: r.labels.get("service").cloned(),
                        status: r.status,
                        role: Role::Symptom,
                        starts_at_ms: r.starts_at_ms,
                        severity: r.labels.get("severity").cloned().unwrap_or_default(),
                    });
                }
            }
            for l in &self.cfg.correlation_labels {
                if let Some(v) = r.labels.get(l) {
                    ix.tokens.insert(format!("{l}={v}"));
                }
            }
            if let Some(s) = r.labels.get("service") {
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

    /// Open incidents the firing alerts are related to, oldest first.
    fn related_incidents(&self, firing: &[u64], now: i64) -> Vec<String> {
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
        out.sort_by_key(|id| self.incidents.get(id).map_or(0, |i| i.opened_ms));
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
        out.event(&id, now, "opened", "new incident".into());
        id
    }

    /// Folds incident `from` into `into`.
    fn merge(&mut self, into: &str, from: &str, now: i64, out: &mut TickResult) {
        let Some(mut src) = self.incidents.remove(from) else {
            return;
        };
        src.status = IncidentStatus::Resolved;
        src.resolved_ms = Some(now);
        src.merged_into = Some(into.to_string());
        src.updated_ms = now;
        let moved = std::mem::take(&mut src.alerts);
        let groups = src.groups.clone();
        let src_ix = self.index.remove(from).unwrap_or_default();
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
        if let Some(dst) = self.incidents.get_mut(into) {
            let n = moved.len();
            for m in moved {
                if !dst.alerts.iter().any(|x| x.fingerprint == m.fingerprint) {
                    dst.alerts.push(m);
                }
            }
            for g in groups {
                if !dst.groups.contains(&g) {
                    dst.groups.push(g);
                }
            }
            dst.opened_ms = dst.opened_ms.min(now);
            let ix = self.index.entry(into.to_string()).or_default();
            ix.tokens.extend(src_ix.tokens);
            ix.services.extend(src_ix.services);
            out.event(into, now, "merged", format!("absorbed {from} ({n} alerts)"));
        }
    }

    /// Root cause, severity, labels, title, status and similar incidents.
    fn recompute(&mut self, id: &str, now: i64, out: &mut TickResult) {
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
        let roots: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| {
                !services
                    .iter()
                    .any(|t| t != s && self.topo.depends_on(s, t))
            })
            .collect();
        let root_service = roots
            .iter()
            .copied()
            .max_by_key(|s| {
                let dependents = services
                    .iter()
                    .filter(|t| self.topo.depends_on(t, s))
                    .count();
                let earliest = pool
                    .iter()
                    .filter(|m| m.service.as_deref() == Some(s))
                    .map(|m| m.starts_at_ms)
                    .min()
                    .unwrap_or(i64::MAX);
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
                    .map(|m| {
                        format!(
                            "{}{}",
                            m.alertname,
                            m.service
                                .as_ref()
                                .map(|s| format!(" on {s}"))
                                .unwrap_or_default()
                        )
                    })
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
            common = Some(match common {
                None => r.labels.clone(),
                Some(c) => c
                    .into_iter()
                    .filter(|(k, v)| r.labels.get(k) == Some(v))
                    .collect(),
            });
        }
        if let Some(c) = common {
            inc.common_labels = c;
        }
        let firing = inc
            .alerts
            .iter()
            .filter(|m| m.status == AlertStatus::Firing)
            .count();
        inc.title = match inc
            .alerts
            .iter()
            .find(|m| Some(&m.fingerprint) == inc.root_cause.as_ref())
        {
            Some(m) => format!(
                "{}{} ({} alert{}{})",
                m.alertname,
                m.service
                    .as_ref()
                    .map(|s| format!(" on {s}"))
                    .unwrap_or_default(),
                inc.alerts.len(),
                if inc.alerts.len() == 1 { "" } else { "s" },
                if inc.services.len() > 1 {
                    format!(", {} services", inc.services.len())
                } else {
                    String::new()
                }
            ),
            None => "incident".into(),
        };
        inc.similar = similar;
        let mut recommended: Vec<String> = Vec::new();
        for s in &inc.similar {
            for r in &s.runbooks {
                if !recommended.contains(r) {
                    recommended.push(r.clone());
                }
            }
        }
        inc.recommended_runbooks = recommended;
        if firing == 0 && inc.is_open() {
            inc.status = IncidentStatus::Resolved;
            inc.resolved_ms = Some(now);
            self.index.remove(id);
            self.group_incident.retain(|_, v| v != id);
            out.event(id, now, "resolved", "every alert resolved".into());
        }
        out.touch(id);
    }

    /// Past (resolved) incidents most like this one: Jaccard similarity of their
    /// `alertname` and `service` values.
    fn similar_to(&self, id: &str) -> Vec<Similar> {
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
            .filter_map(|p| {
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
            })
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        scored.truncate(3);
        scored
    }
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
fn is_inhibited(
    rules: &[crate::runbook::model::InhibitRule],
    sources: &[HashSet<Vec<String>>],
    labels: &Labels,
) -> bool {
    rules.iter().zip(sources).any(|(rule, srcs)| {
        !srcs.is_empty()
            && rule.target.iter().all(|m| m.matches(labels))
            && !rule.source.iter().all(|m| m.matches(labels))
            && srcs.contains(&equal_values(&rule.equal, labels))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::duration::Duration;
    use crate::runbook::model::InhibitRule;

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
            group_wait: crate::runbook::duration::Duration::from_secs(30),
            group_interval: crate::runbook::duration::Duration::from_secs(120),
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
