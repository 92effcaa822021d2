//! `vigil.yaml`: notifiers, the services dependency map, alerting and its timings.

use super::*;

/// How many parts of a config are left out, at most, to read the rest.
const MAX_LEFT_OUT: usize = 64;

impl Checker<'_> {
    /// The checked config, and where its first problem is when parts of it had to be
    /// left out to read the rest (`None` config when not even that worked).
    pub(super) fn config(&mut self, doc: &Node) -> (Option<Config>, Option<Span>) {
        let (c, left_out) = self.decode_config(doc);
        let Some(c) = c else {
            return (None, left_out.or(Some(doc.span)));
        };
        (Some(self.checked_config(doc, c)), left_out)
    }

    /// Decodes the config, leaving out what cannot be read (an unknown key, a value of
    /// the wrong type) after reporting it, so that one typo does not lose the rest:
    /// the plugin dirs and sources above all, on which every plugin action rests.
    /// Returns the config, if any, and where the first problem is, if any.
    fn decode_config(&mut self, doc: &Node) -> (Option<ConfigDoc>, Option<Span>) {
        let mut node = doc.clone();
        let mut first: Option<Span> = None;
        for _ in 0..=MAX_LEFT_OUT {
            let e = match from_node::<ConfigDoc>(&node) {
                Ok(c) => return (Some(c), first),
                Err(e) => e,
            };
            let span = e.span;
            first.get_or_insert(span.unwrap_or(doc.span));
            self.de_error(doc.span, e);
            if !span.is_some_and(|at| leave_out(&mut node, at)) {
                break;
            }
        }
        (None, first)
    }

    fn checked_config(&mut self, doc: &Node, c: ConfigDoc) -> Config {
        self.api_version(&c.api_version);
        self.config_times(doc, &c);
        let services = self.services(c.services);
        let alerting = self.alerting(c.alerting);
        let notifiers = self.notifiers(c.notifiers);
        let base = self
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Config {
            file: Some(self.file.to_path_buf()),
            store: c.store.map(|s| base.join(s)),
            plugin_dirs: c
                .plugins
                .unwrap_or_default()
                .dirs
                .iter()
                .map(|d| base.join(d))
                .collect(),
            api: c.api.unwrap_or_default(),
            executor: c.executor.unwrap_or_default(),
            sources: c.sources,
            notifiers,
            guardrails: c.guardrails.unwrap_or_default(),
            oncall: c.oncall,
            services,
            alerting,
            retention: c.retention.unwrap_or_default(),
        }
    }

    pub(super) fn notifiers(&mut self, docs: Vec<NotifierDoc>) -> Vec<Notifier> {
        let mut out: Vec<Notifier> = Vec::new();
        for d in docs {
            if out.iter().any(|n| n.name == d.name.value) {
                self.error(
                    d.name.span,
                    format!("notifier `{}` is defined twice", d.name.value),
                    "give each notifier its own name",
                );
                continue;
            }
            if !d.uses.value.contains('/') {
                self.error(
                    d.uses.span,
                    format!("`uses: {}` names no action", d.uses.value),
                    "write `<plugin>/<action>`, e.g. `http/slack`",
                );
            }
            let mut on = Vec::new();
            let notifiable = RunOutcome::NOTIFIABLE.map(RunOutcome::as_str);
            for o in &d.on {
                match o.value.parse::<RunOutcome>() {
                    Ok(outcome) if RunOutcome::NOTIFIABLE.contains(&outcome) => on.push(outcome),
                    _ => {
                        let hint = vigil_core::suggest::hint(&o.value, notifiable);
                        self.error(o.span, format!("unknown outcome `{}`", o.value), hint);
                    }
                }
            }
            if d.on.is_empty() {
                on = RunOutcome::NOTIFIED_BY_DEFAULT.to_vec();
            }
            let with = d
                .with
                .as_ref()
                .map_or(Input::Map(Vec::new()), |w| self.input(w));
            out.push(Notifier {
                name: d.name.value,
                uses: d.uses.value,
                with,
                on,
            });
        }
        out
    }

    pub(super) fn services(
        &mut self,
        doc: Option<BTreeMap<String, ServiceDoc>>,
    ) -> BTreeMap<String, Vec<String>> {
        let doc = doc.unwrap_or_default();
        let names: Vec<&str> = doc.keys().map(String::as_str).collect();
        let mut out = BTreeMap::new();
        for (name, svc) in &doc {
            let mut deps = Vec::new();
            for d in &svc.depends_on {
                if !doc.contains_key(&d.value) {
                    self.error(
                        d.span,
                        format!("service `{name}` depends on unknown service `{}`", d.value),
                        suggest::hint(&d.value, names.iter().copied()),
                    );
                } else if d.value == *name {
                    self.error(
                        d.span,
                        format!("service `{name}` depends on itself"),
                        "remove it from its own `depends_on`",
                    );
                } else {
                    deps.push(d.value.clone());
                }
            }
            out.insert(name.clone(), deps);
        }
        out
    }

    pub(super) fn alerting(&mut self, doc: Option<AlertingDoc>) -> Alerting {
        let mut a = Alerting::default();
        let Some(doc) = doc else { return a };
        if let Some(g) = doc.group_by {
            a.group_by = if g.iter().any(|l| l == "...") {
                None
            } else {
                Some(g)
            };
        }
        a.group_wait = doc.group_wait.unwrap_or(a.group_wait);
        a.group_interval = doc.group_interval.unwrap_or(a.group_interval);
        a.repeat_interval = doc.repeat_interval.unwrap_or(a.repeat_interval);
        a.resolve_timeout = doc.resolve_timeout.unwrap_or(a.resolve_timeout);
        if let Some(c) = doc.correlation {
            a.correlation_window = c.window.unwrap_or(a.correlation_window);
            if let Some(l) = c.labels {
                a.correlation_labels = l;
            }
        }
        a.runbooks = doc.runbooks.unwrap_or_default();
        for r in &doc.inhibit_rules {
            let source = self.trigger(&r.source_match);
            let target = self.trigger(&r.target_match);
            a.inhibit_rules.push(InhibitRule {
                source,
                target,
                equal: r.equal.clone(),
            });
        }
        a
    }

    /// RFC 3339 timestamps in freeze windows and rotations, reported where written.
    pub(super) fn config_times(&mut self, doc: &Node, c: &ConfigDoc) {
        let check = |this: &mut Self, text: &str, at: Option<&Node>| {
            if chrono::DateTime::parse_from_rfc3339(text).is_err() {
                let span = at.map_or(doc.span, |n| n.span);
                this.error(
                    span,
                    format!("invalid time `{text}`"),
                    "write an RFC 3339 time, e.g. `2026-12-20T18:00:00Z`",
                );
            }
        };
        let guard = doc.get("guardrails").and_then(|g| g.get("freeze"));
        if let Some(g) = &c.guardrails {
            for (i, w) in g.freeze.iter().enumerate() {
                let node = guard.and_then(|f| match &f.value {
                    Value::Seq(items) => items.get(i),
                    _ => None,
                });
                check(self, &w.start, node.and_then(|n| n.get("start")));
                check(self, &w.end, node.and_then(|n| n.get("end")));
            }
        }
        for (team, r) in &c.oncall {
            let node = doc.get("oncall").and_then(|o| o.get(team));
            check(self, &r.start, node.and_then(|n| n.get("start")));
            if r.members.is_empty() {
                self.error(
                    node.map_or(doc.span, |n| n.span),
                    format!("rotation `{team}` has no members"),
                    "list who is on call under `members:`",
                );
            }
        }
    }
}

/// Removes from `node` the innermost map entry or list item holding `at` (not `node`
/// itself); false when there is none.
fn leave_out(node: &mut Node, at: Span) -> bool {
    let holds = |n: &Node| n.span.start <= at.start && at.end <= n.span.end;
    match &mut node.value {
        Value::Map(entries) => {
            let Some(i) = entries.iter().position(|(k, v)| holds(k) || holds(v)) else {
                return false;
            };
            if !holds(&entries[i].1) || !leave_out(&mut entries[i].1, at) {
                entries.remove(i);
            }
            true
        }
        Value::Seq(items) => {
            let Some(i) = items.iter().position(holds) else {
                return false;
            };
            if !leave_out(&mut items[i], at) {
                items.remove(i);
            }
            true
        }
        _ => false,
    }
}
