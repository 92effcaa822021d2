//! Loading a bundle (a directory or a single file) and checking it.
//!
//! Loading never stops at the first problem: every file is read, every document
//! and step decoded on its own, and every problem becomes a [`Diagnostic`].

use super::de::{DeError, Spanned, from_node};
use super::model::*;
use super::template::{Template, file_pos};
use super::yaml::{Node, Value, parse_documents};
use crate::graph::{Cycle, Dag};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use vigil_core::diag::{self, Diagnostic};
use vigil_core::outcome::RunOutcome;
use vigil_core::span::Span;
use vigil_core::suggest;
use vigil_policy::expr::ExprEngine;

/// Longest history a detector's first run may load: a year.
const MAX_HISTORY_SECS: u64 = 366 * 86_400;

/// Everything loaded from a bundle, with the problems found.
#[derive(Debug, Default)]
pub struct Bundle {
    /// The bundle directory (where `vigil.yaml`, `runbooks/`, `policies/` live).
    pub root: Option<PathBuf>,
    pub config: Config,
    pub runbooks: Vec<Runbook>,
    pub detectors: Vec<Detector>,
    pub policies: Vec<PolicyFile>,
    /// The text of every file read, to render diagnostics with source lines.
    pub sources: BTreeMap<PathBuf, String>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
}

impl Bundle {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn runbook(&self, name: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&PolicyFile> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Loads a bundle directory, or a single resource file (finding its bundle root,
    /// if any, for policy references).
    pub fn load(path: &Path) -> io::Result<Bundle> {
        let mut bundle = Bundle::default();
        let exprs = ExprEngine::new();
        if path.is_dir() {
            bundle.root = Some(path.to_path_buf());
            bundle.load_policies(&path.join("policies"))?;
            for file in bundle_files(path)? {
                bundle.load_file(&file, &exprs)?;
            }
        } else {
            let root = find_root(path);
            if let Some(root) = &root {
                bundle.load_policies(&root.join("policies"))?;
            }
            bundle.root = root;
            bundle.load_file(path, &exprs)?;
        }
        bundle.check_policy_references();
        diag::sort(&mut bundle.diagnostics);
        Ok(bundle)
    }

    /// Loads resources from text (used by tests and the API).
    pub fn from_source(file: &Path, text: &str) -> Bundle {
        let mut bundle = Bundle::default();
        bundle.load_text(file, text.to_string(), &ExprEngine::new());
        diag::sort(&mut bundle.diagnostics);
        bundle
    }

    fn load_policies(&mut self, dir: &Path) -> io::Result<()> {
        if !dir.is_dir() {
            return Ok(());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
            .collect();
        files.sort();
        for file in files {
            let Some(bytes) = read_capped(&file)? else {
                self.diagnostics.push(
                    Diagnostic::error(
                        &file,
                        Span::at(vigil_core::span::Pos { line: 1, col: 1 }),
                        format!(
                            "policy is larger than {} MiB; refusing to load it",
                            MAX_FILE_BYTES >> 20
                        ),
                    )
                    .with_hint("a policy is a short script: check that this is the file you meant"),
                );
                continue;
            };
            let source = String::from_utf8(bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.policies.push(PolicyFile { name, file, source });
        }
        Ok(())
    }

    fn load_file(&mut self, file: &Path, exprs: &ExprEngine) -> io::Result<()> {
        let Some(bytes) = read_capped(file)? else {
            self.diagnostics.push(
                Diagnostic::error(
                    file,
                    Span::at(vigil_core::span::Pos { line: 1, col: 1 }),
                    format!(
                        "file is larger than {} MiB; refusing to load it",
                        MAX_FILE_BYTES >> 20
                    ),
                )
                .with_hint("a bundle file is a few resources: split it, or check that this is the file you meant"),
            );
            return Ok(());
        };
        match String::from_utf8(bytes) {
            Ok(text) => self.load_text(file, text, exprs),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(valid);
                let line = text.lines().count().max(1) as u32;
                self.diagnostics.push(
                    Diagnostic::error(
                        file,
                        Span::at(vigil_core::span::Pos { line, col: 1 }),
                        "file is not valid UTF-8",
                    )
                    .with_hint("save the file as UTF-8"),
                );
            }
        }
        Ok(())
    }

    fn load_text(&mut self, file: &Path, text: String, exprs: &ExprEngine) {
        self.files += 1;
        let docs = match parse_documents(&text) {
            Ok(docs) => docs,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::error(file, e.span, format!("YAML syntax error: {}", e.message))
                        .with_hint("check indentation and quoting around this position"),
                );
                self.sources.insert(file.to_path_buf(), text);
                return;
            }
        };
        for doc in &docs {
            if doc.value == Value::Null {
                continue;
            }
            let mut checker = Checker {
                file,
                diags: Vec::new(),
                exprs,
            };
            match doc_kind(doc) {
                Err(d) => checker.push(d.into_diag(file)),
                Ok(kind) => match kind.as_str() {
                    "Runbook" => {
                        if let Some(rb) = checker.runbook(doc) {
                            if let Some(prev) = self.runbooks.iter().find(|r| r.name == rb.name) {
                                let span = doc.get("name").map_or(doc.span, |n| n.span);
                                checker.push(
                                    Diagnostic::error(
                                        file,
                                        span,
                                        format!("duplicate runbook name `{}`", rb.name),
                                    )
                                    .with_hint(format!(
                                        "`{}` is already defined in {}",
                                        rb.name,
                                        prev.file.display()
                                    )),
                                );
                            } else {
                                self.runbooks.push(rb);
                            }
                        }
                    }
                    "Detector" => {
                        if let Some(d) = checker.detector(doc) {
                            self.detectors.push(d);
                        }
                    }
                    "Config" => {
                        if let Some(c) = checker.config(doc) {
                            self.config = c;
                        }
                    }
                    other => {
                        let span = doc.get("kind").map_or(doc.span, |n| n.span);
                        checker.push(
                            Diagnostic::error(file, span, format!("unknown kind `{other}`"))
                                .with_hint(suggest::hint(other, KINDS)),
                        );
                    }
                },
            }
            self.diagnostics.append(&mut checker.diags);
        }
        self.sources.insert(file.to_path_buf(), text);
    }

    fn check_policy_references(&mut self) {
        let names: Vec<String> = self.policies.iter().map(|p| p.name.clone()).collect();
        for rb in &self.runbooks {
            let Some(policy) = &rb.policy else { continue };
            if self.root.is_none() || names.contains(policy) {
                continue;
            }
            let span = rb.policy_span;
            self.diagnostics.push(
                Diagnostic::error(
                    &rb.file,
                    span,
                    format!("policy `{policy}` not found in policies/"),
                )
                .with_hint(
                    match suggest::closest(policy, names.iter().map(String::as_str)) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!(
                            "create policies/{policy}.rhai with a `decide(incident, plan)` function"
                        ),
                    },
                ),
            );
        }
    }
}

/// The resource files of a bundle: `vigil.yaml`, `runbooks/`, `detectors/`, and any
/// other `*.yaml` at the top level.
fn bundle_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in [
        root.to_path_buf(),
        root.join("runbooks"),
        root.join("detectors"),
    ] {
        if !dir.is_dir() {
            continue;
        }
        let mut here: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        here.sort();
        files.extend(here);
    }
    Ok(files)
}

/// The largest bundle file (YAML or policy) read into memory. A bundle is a few
/// resources; a file past this is a mistake or an attack, and is refused unread.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The file's bytes, or `None` when it is larger than [`MAX_FILE_BYTES`]. Reads at most
/// one byte past the cap, whatever the file's metadata says (it may grow meanwhile).
fn read_capped(file: &Path) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}

/// The bundle a file belongs to: the nearest ancestor directory with a `vigil.yaml`.
fn find_root(file: &Path) -> Option<PathBuf> {
    let mut dir = file.parent()?;
    for _ in 0..4 {
        let candidate = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if candidate.join("vigil.yaml").is_file() {
            return Some(candidate.to_path_buf());
        }
        dir = dir.parent()?;
    }
    None
}

/// A problem found before a file is known.
struct Problem {
    span: Span,
    message: String,
    hint: Option<String>,
}

impl Problem {
    fn into_diag(self, file: &Path) -> Diagnostic {
        Diagnostic::error(file, self.span, self.message).with_hint_opt(self.hint)
    }
}

fn doc_kind(doc: &Node) -> Result<String, Problem> {
    if doc.as_map().is_none() {
        return Err(Problem {
            span: doc.span,
            message: format!("expected a resource (a mapping), found {}", doc.type_name()),
            hint: Some("start the document with `apiVersion: vigil/v1` and `kind: Runbook`".into()),
        });
    }
    match doc.get("kind") {
        Some(k) => k.as_str().map(str::to_string).ok_or_else(|| Problem {
            span: k.span,
            message: format!("`kind` must be a string, found {}", k.type_name()),
            hint: Some(format!("one of {}", KINDS.join(", "))),
        }),
        None => Err(Problem {
            span: doc.span,
            message: "missing required key `kind`".into(),
            hint: Some(format!("add `kind: Runbook` (or {})", KINDS.join(", "))),
        }),
    }
}

/// Checks one document, collecting diagnostics.
struct Checker<'a> {
    file: &'a Path,
    diags: Vec<Diagnostic>,
    exprs: &'a ExprEngine,
}

impl<'a> Checker<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn error(&mut self, span: Span, message: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(self.file, span, message).with_hint(hint));
    }

    fn de_error(&mut self, fallback: Span, e: DeError) {
        self.diags.push(
            Diagnostic::error(self.file, e.span.unwrap_or(fallback), e.message)
                .with_hint_opt(e.hint),
        );
    }

    fn decode<T: serde::de::DeserializeOwned>(&mut self, node: &Node) -> Option<T> {
        match from_node(node) {
            Ok(v) => Some(v),
            Err(e) => {
                self.de_error(node.span, e);
                None
            }
        }
    }

    fn api_version(&mut self, v: &Spanned<String>) {
        if v.value != API_VERSION {
            self.error(
                v.span,
                format!("unsupported apiVersion `{}`", v.value),
                format!("use `apiVersion: {API_VERSION}`"),
            );
        }
    }

    fn name(&mut self, name: &Spanned<String>, what: &str) {
        let ok = !name.value.is_empty()
            && name.value.len() <= 128
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.error(
                name.span,
                format!("invalid {what} name `{}`", name.value),
                "use letters, digits, `-`, `_` and `.` (at most 128 characters)",
            );
        }
    }

    /// Checks an expression and reports errors at their place in the file.
    fn expression(
        &mut self,
        source: &str,
        offset: usize,
        at: &Spanned<String>,
        single_line: bool,
    ) -> bool {
        match self.exprs.check(source) {
            Ok(()) => true,
            Err(e) => {
                let pos = file_pos(at.text_start(), single_line, offset, e.line, e.col);
                let mut d = Diagnostic::error(
                    self.file,
                    Span::at(pos),
                    format!("invalid expression `{source}`: {}", e.message),
                );
                d.hint = e.hint.or_else(|| {
                    Some("expressions are Rhai, e.g. `${{ steps.check.output.value > 2 }}`".into())
                });
                self.push(d);
                false
            }
        }
    }

    /// Parses a template (a `with` value or `from`) and checks its expressions.
    fn template(&mut self, text: &Spanned<String>, condition: bool) -> Option<Template> {
        let parsed = if condition {
            Template::parse_condition(&text.value)
        } else {
            Template::parse(&text.value)
        };
        let single_line = text.span.is_single_line() && !text.value.contains('\n');
        match parsed {
            Ok(t) => {
                let mut ok = true;
                for (source, offset) in t.expressions() {
                    ok &= self.expression(source, offset, text, single_line);
                }
                ok.then_some(t)
            }
            Err(e) => {
                let pos = file_pos(text.text_start(), single_line, e.offset, 1, 1);
                self.error(Span::at(pos), e.message, e.hint);
                None
            }
        }
    }

    fn input(&mut self, node: &Node) -> Input {
        match &node.value {
            Value::Str(s) if s.contains("${{") => {
                let spanned = Spanned {
                    value: s.clone(),
                    span: node.span,
                    quoted: node.quoted,
                };
                let parsed = self.template(&spanned, false);
                Input::Template(TemplateInput {
                    text: s.clone(),
                    pos: node.text_start(),
                    parsed,
                })
            }
            Value::Seq(items) => Input::List(items.iter().map(|i| self.input(i)).collect()),
            Value::Map(entries) => Input::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_string(), self.input(v)))
                    .collect(),
            ),
            _ => Input::Literal(node.to_json()),
        }
    }

    fn config(&mut self, doc: &Node) -> Option<Config> {
        let c: ConfigDoc = self.decode(doc)?;
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
        Some(Config {
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
        })
    }

    fn notifiers(&mut self, docs: Vec<NotifierDoc>) -> Vec<Notifier> {
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

    fn services(
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

    fn alerting(&mut self, doc: Option<AlertingDoc>) -> Alerting {
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
    fn config_times(&mut self, doc: &Node, c: &ConfigDoc) {
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

    fn detector(&mut self, doc: &Node) -> Option<Detector> {
        let d: DetectorDoc = self.decode(doc)?;
        self.api_version(&d.api_version);
        self.name(&d.name, "detector");
        let schedule = d.schedule.value.trim();
        // Five fields (no seconds) are accepted as cron users expect: run at second 0.
        let six = if schedule.split_whitespace().count() == 5 {
            format!("0 {schedule}")
        } else {
            schedule.to_string()
        };
        if let Err(e) = six.parse::<cron::Schedule>() {
            self.error(
                d.schedule.span,
                format!("invalid cron schedule `{schedule}`: {e}"),
                "use `sec min hour day month weekday`, e.g. `*/30 * * * * *` for every 30 seconds",
            );
        }
        let model = match from_node::<crate::detector::ModelDoc>(&d.model) {
            Err(e) => {
                self.de_error(d.model.span, e);
                None
            }
            Ok(doc) => match crate::detector::DetectorModel::check(doc) {
                Ok(model) => Some(model),
                Err(why) => {
                    self.error(
                        d.model.span,
                        format!("invalid detector model: {why}"),
                        "e.g. `model: { anomaly: { method: ensemble }, threshold: 0.5 }`",
                    );
                    None
                }
            },
        };
        let wants_features = model.as_ref().is_some_and(|m| m.classifier().is_some());
        let features = self.detector_input(&d, wants_features, doc.span);
        if let Some(history) = &d.history
            && !(1..=MAX_HISTORY_SECS).contains(&history.value.as_std().as_secs())
        {
            self.error(
                history.span,
                format!("history `{}` is out of range", history.value),
                "give between 1s and a year, e.g. `history: 8w`",
            );
        }
        Some(Detector {
            model: model?,
            name: d.name.value,
            description: d.description,
            file: self.file.to_path_buf(),
            schedule: six,
            source_span: d.source.span,
            source: d.source.value,
            query: d.query.map(|q| q.value).unwrap_or_default(),
            features,
            alert: d.alert,
            history: d.history.map(|h| h.value),
        })
    }

    /// Checks that a detector reads what its model needs: `query:` for a model of one
    /// series, `features:` (each of the classifier's features, once) for a classifier.
    fn detector_input(
        &mut self,
        d: &DetectorDoc,
        wants_features: bool,
        doc_span: Span,
    ) -> BTreeMap<String, String> {
        use vigil_detect::classifier::FEATURE_METRICS;
        match (&d.query, &d.features, wants_features) {
            (Some(_), None, false) => BTreeMap::new(),
            (None, Some(f), true) => {
                for (name, query) in &f.value {
                    if !FEATURE_METRICS.contains(&name.as_str()) {
                        self.error(
                            query.span,
                            format!("unknown feature `{name}`"),
                            vigil_core::suggest::hint(name, FEATURE_METRICS.iter().copied()),
                        );
                    }
                }
                for want in FEATURE_METRICS {
                    if !f.value.contains_key(want) {
                        self.error(
                            f.span,
                            format!("feature `{want}` has no query"),
                            format!(
                                "the classifier reads {}: give each a query",
                                FEATURE_METRICS.join(", ")
                            ),
                        );
                    }
                }
                f.value
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect()
            }
            (Some(q), _, true) => {
                self.error(
                    q.span,
                    "a classifier reads several series: give `features:`, not `query:`",
                    format!(
                        "write `features: {{ {} }}`, a query for each",
                        FEATURE_METRICS
                            .iter()
                            .map(|m| format!("{m}: …"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                BTreeMap::new()
            }
            (_, Some(f), false) => {
                self.error(
                    f.span,
                    "`features:` is for a classifier model; this model scores one series",
                    "give `query:` instead, or use `model: { classifier: { model: NAME } }`",
                );
                BTreeMap::new()
            }
            (None, None, _) => {
                self.error(
                    doc_span,
                    "a detector needs `query:` (or `features:` for a classifier)",
                    "e.g. `query: \"rate(http_requests_total[5m])\"`",
                );
                BTreeMap::new()
            }
        }
    }

    fn runbook(&mut self, doc: &Node) -> Option<Runbook> {
        let rb: RunbookDoc = self.decode(doc)?;
        self.api_version(&rb.api_version);
        self.name(&rb.name, "runbook");

        let params = self.params(rb.params.as_ref());
        let trigger = rb
            .trigger
            .as_ref()
            .map(|t| self.trigger(&t.matchers))
            .unwrap_or_default();

        if rb.steps.value.is_empty() {
            self.error(
                rb.steps.span,
                "a runbook needs at least one step",
                "add a step under `steps:`",
            );
        }
        let decoded: Vec<(Option<StepDoc>, &Node)> = rb
            .steps
            .value
            .iter()
            .map(|n| (self.decode::<StepDoc>(n), n))
            .collect();

        // Step ids: unique and usable in expressions.
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, (doc, _)) in decoded.iter().enumerate() {
            let Some(doc) = doc else { continue };
            let id = &doc.id;
            let valid = id
                .value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && id
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                self.error(
                    id.span,
                    format!("invalid step id `{}`", id.value),
                    "start with a letter; use letters, digits, `_` and `-`",
                );
            }
            if let Some(&first) = index.get(&id.value) {
                let line = decoded[first]
                    .0
                    .as_ref()
                    .map_or(0, |d| d.id.span.start.line);
                self.error(
                    id.span,
                    format!("duplicate step id `{}`", id.value),
                    format!(
                        "`{}` is first defined at line {line}; rename one of them",
                        id.value
                    ),
                );
            } else {
                index.insert(id.value.clone(), i);
            }
        }
        let ids: Vec<&str> = decoded
            .iter()
            .filter_map(|(d, _)| d.as_ref().map(|d| d.id.value.as_str()))
            .collect();

        let mut steps = Vec::new();
        let mut needs_all: Vec<Vec<usize>> = Vec::new();
        let mut exprs_by_step: Vec<Vec<(Spanned<String>, bool)>> = Vec::new();
        for (doc, node) in &decoded {
            let Some(doc) = doc else { continue };
            let (step, exprs) = self.step(doc, node, &index, &ids);
            needs_all.push(step.needs.clone());
            exprs_by_step.push(exprs);
            steps.push(step);
        }
        // Every step decoded: indices in `index` are positions in `decoded`; remap to `steps`.
        if steps.len() != decoded.len() {
            return None;
        }

        // Compensation steps run only from `on_failure`.
        let compensations: Vec<usize> = steps
            .iter()
            .filter_map(|s| match s.on_failure {
                OnFailure::Compensate(i) => Some(i),
                _ => None,
            })
            .collect();
        for &c in &compensations {
            steps[c].compensation = true;
            if !steps[c].needs.is_empty() {
                let span = steps[c].span;
                let id = steps[c].id.clone();
                self.error(
                    span,
                    format!("compensation step `{id}` cannot have `needs`"),
                    "it runs when the step naming it in `on_failure` fails; remove `needs`",
                );
            }
        }
        for (i, s) in steps.iter().enumerate() {
            for &n in &s.needs {
                if steps[n].compensation {
                    let id = steps[n].id.clone();
                    self.error(
                        s.span,
                        format!("step `{}` needs compensation step `{id}`", s.id),
                        format!("`{id}` runs only on failure; depend on a regular step (step {i})"),
                    );
                }
            }
        }

        let dag = match Dag::build(&needs_all) {
            Ok(dag) => Some(dag),
            Err(cycles) => {
                for Cycle(path) in cycles {
                    let names: Vec<&str> = path.iter().map(|&i| steps[i].id.as_str()).collect();
                    let span = steps[path[0]].span;
                    self.error(
                        span,
                        format!("cycle: {}", names.join(" → ")),
                        "remove one of these `needs` so the steps can be ordered",
                    );
                }
                None
            }
        };

        // References to steps and params inside expressions.
        let param_names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        for (i, exprs) in exprs_by_step.iter().enumerate() {
            for (text, is_assert) in exprs {
                self.references(text, i, &steps, dag.as_ref(), &param_names, *is_assert);
            }
        }

        for (step, exprs) in steps.iter_mut().zip(&exprs_by_step) {
            step.reads = step_reads(exprs.iter().map(|(t, _)| t.value.as_str()), &ids);
        }

        Some(Runbook {
            name: rb.name.value,
            description: rb.description.unwrap_or_default(),
            file: self.file.to_path_buf(),
            trigger,
            params,
            policy_span: rb.policy.as_ref().map(|p| p.span).unwrap_or_default(),
            policy: rb.policy.map(|p| p.value),
            timeout: rb.timeout.map(|t| t.value),
            concurrency: rb.concurrency.map(|c| c.value),
            steps,
        })
    }

    fn params(&mut self, node: Option<&Node>) -> Vec<Param> {
        let Some(node) = node else { return Vec::new() };
        if node.value == Value::Null {
            return Vec::new();
        }
        let Some(entries) = node.as_map() else {
            self.error(
                node.span,
                format!("`params` must be a mapping, found {}", node.type_name()),
                "write `params:` followed by `name: { type: string }` entries",
            );
            return Vec::new();
        };
        let mut params = Vec::new();
        for (k, v) in entries {
            let name = k.key_string();
            let Some(p) = self.decode::<ParamDoc>(v) else {
                continue;
            };
            let from = p.from.as_ref().and_then(|f| {
                let parsed = self.template(f, false)?;
                Some(TemplateInput {
                    text: f.value.clone(),
                    pos: f.text_start(),
                    parsed: Some(parsed),
                })
            });
            let default = p.default.as_ref().map(Node::to_json);
            if let (Some(ty), Some(d)) = (p.ty, &default)
                && !type_matches(ty, d)
            {
                let span = p.default.as_ref().map_or(v.span, |n| n.span);
                self.error(
                    span,
                    format!("default of `{name}` is not a {ty:?}", ty = ty),
                    "make the default match the declared `type`",
                );
            }
            params.push(Param {
                name,
                ty: p.ty,
                required: p.required,
                default,
                from,
                description: p.description,
            });
        }
        params
    }

    fn trigger(&mut self, node: &Node) -> Vec<Matcher> {
        let Some(entries) = node.as_map() else {
            self.error(
                node.span,
                "`match` must be a mapping of label matchers",
                "e.g. `match: { alertname: MemoryLeak, severity: \"=~critical|warning\" }`",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let value = match &v.value {
                Value::Str(s) => s.clone(),
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => v.key_string(),
                _ => {
                    self.error(
                        v.span,
                        format!("matcher for `{}` must be a string", k.key_string()),
                        "write `label: value`, `label: \"!=value\"`, `label: \"=~regex\"`",
                    );
                    continue;
                }
            };
            match Matcher::parse(&k.key_string(), &value) {
                Ok(m) => out.push(m),
                Err(e) => self.error(
                    v.span,
                    e.to_string(),
                    "fix the regular expression (RE2 syntax, anchored)",
                ),
            }
        }
        out
    }

    fn step(
        &mut self,
        doc: &StepDoc,
        node: &Node,
        index: &HashMap<String, usize>,
        ids: &[&str],
    ) -> (Step, Vec<(Spanned<String>, bool)>) {
        let mut exprs = Vec::new();
        let uses = &doc.uses;
        let valid_uses = uses.value.split_once('/').is_some_and(|(p, a)| {
            !p.is_empty() && !a.is_empty() && !a.contains(' ') && !p.contains(' ')
        });
        if !valid_uses {
            self.error(
                uses.span,
                format!("invalid `uses: {}`", uses.value),
                "write `<plugin>/<action>`, e.g. `core/log` or `prometheus/query`",
            );
        }

        let mut needs = Vec::new();
        for need in self.string_list(doc.needs.as_ref(), "needs") {
            match index.get(&need.value) {
                Some(&i) if need.value == doc.id.value => {
                    let _ = i;
                    self.error(
                        need.span,
                        format!("step `{}` needs itself", doc.id.value),
                        "remove it from `needs`",
                    );
                }
                Some(&i) => {
                    if !needs.contains(&i) {
                        needs.push(i);
                    }
                }
                None => {
                    let hint = match suggest::closest(&need.value, ids.iter().copied()) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("steps in this runbook: {}", ids.join(", ")),
                    };
                    self.error(
                        need.span,
                        format!(
                            "step `{}` needs `{}`, which does not exist",
                            doc.id.value, need.value
                        ),
                        hint,
                    );
                }
            }
        }

        let on_failure = match doc.on_failure.as_ref().map(|s| (s.value.as_str(), s)) {
            None | Some(("abort", _)) => OnFailure::Abort,
            Some(("continue", _)) => OnFailure::Continue,
            Some((id, s)) => match index.get(id) {
                Some(_) if id == doc.id.value => {
                    self.error(
                        s.span,
                        format!("step `{id}` cannot compensate for itself"),
                        "name another step, or use `abort`/`continue`",
                    );
                    OnFailure::Abort
                }
                Some(&i) => OnFailure::Compensate(i),
                None => {
                    let mut choices: Vec<&str> = vec!["abort", "continue"];
                    choices.extend(ids.iter().copied());
                    self.error(
                        s.span,
                        format!("`on_failure: {id}` is neither `abort`, `continue` nor a step id"),
                        suggest::hint(id, choices),
                    );
                    OnFailure::Abort
                }
            },
        };

        let mut condition =
            |this: &mut Self, text: &Option<Spanned<String>>, is_assert: bool| -> Option<Expr> {
                let text = text.as_ref()?;
                let t = this.template(text, true)?;
                exprs.push((text.clone(), is_assert));
                match t.sole_expression() {
                    Some(src) => Some(Expr {
                        source: src.to_string(),
                        pos: text.text_start(),
                    }),
                    None => {
                        this.error(
                            text.span,
                            "a condition must be a single expression",
                            "write `${{ … }}` around the whole condition, with no text outside",
                        );
                        None
                    }
                }
            };
        let when = condition(self, &doc.when, false);
        let assert = condition(self, &doc.assert, true);

        let with = doc.with.as_ref().map_or(Input::Map(Vec::new()), |w| {
            if !matches!(w.value, Value::Map(_) | Value::Null) {
                self.error(
                    w.span,
                    format!(
                        "`with` must be a mapping of inputs, found {}",
                        w.type_name()
                    ),
                    "write `with: { key: value }`",
                );
            }
            collect_templates(w, &mut exprs);
            self.input(w)
        });

        let mut retry = RetryPolicy::default();
        if let Some(r) = &doc.retry {
            if r.attempts.value == 0 {
                self.error(
                    r.attempts.span,
                    "`attempts` must be at least 1",
                    "`attempts` counts the first try: `attempts: 3` tries up to three times",
                );
            }
            retry.attempts = r.attempts.value.max(1);
            if let Some(b) = r.backoff {
                retry.backoff = b;
            }
            if let Some(m) = r.max_backoff {
                retry.max_backoff = m;
            }
            if let Some(f) = r.factor {
                if !(1.0..=10.0).contains(&f) {
                    self.error(
                        node.span,
                        format!("retry `factor` {f} is out of range"),
                        "use a factor between 1 (constant backoff) and 10",
                    );
                }
                retry.factor = f.clamp(1.0, 10.0);
            }
        }
        if let Some(t) = &doc.timeout
            && t.value.as_std().is_zero()
        {
            self.error(
                t.span,
                "`timeout` must be more than zero",
                "e.g. `timeout: 30s`",
            );
        }

        let step = Step {
            id: doc.id.value.clone(),
            name: doc.name.clone(),
            uses: uses.value.clone(),
            needs,
            with,
            when,
            timeout: doc.timeout.as_ref().map(|t| t.value),
            retry,
            approval: doc.approval.unwrap_or_default(),
            on_failure,
            assert,
            compensation: false,
            span: doc.id.span,
            uses_span: uses.span,
            has_expressions: !exprs.is_empty(),
            reads: None,
        };
        (step, exprs)
    }

    fn string_list(&mut self, node: Option<&Node>, key: &str) -> Vec<Spanned<String>> {
        let Some(node) = node else { return Vec::new() };
        let item = |n: &Node| {
            n.as_str().map(|s| Spanned {
                value: s.to_string(),
                span: n.span,
                quoted: n.quoted,
            })
        };
        match &node.value {
            Value::Null => Vec::new(),
            Value::Str(_) => item(node).into_iter().collect(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|n| {
                    let s = item(n);
                    if s.is_none() {
                        self.error(
                            n.span,
                            format!("`{key}` entries must be step ids, found {}", n.type_name()),
                            "write step ids as strings",
                        );
                    }
                    s
                })
                .collect(),
            _ => {
                self.error(
                    node.span,
                    format!("`{key}` must be a step id or a list of step ids"),
                    "e.g. `needs: [measure, drain]`",
                );
                Vec::new()
            }
        }
    }

    /// Checks `steps.X` and `params.Y` references in one expression-bearing value.
    fn references(
        &mut self,
        text: &Spanned<String>,
        step: usize,
        steps: &[Step],
        dag: Option<&Dag>,
        params: &[&str],
        is_assert: bool,
    ) {
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        for (name, offset) in references(&text.value, "steps") {
            let pos = file_pos(text.text_start(), text.span.is_single_line(), offset, 1, 1);
            match ids.iter().position(|id| *id == name) {
                None => {
                    let hint = match suggest::closest(&name, ids.iter().copied()) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("steps in this runbook: {}", ids.join(", ")),
                    };
                    self.error(
                        Span::at(pos),
                        format!(
                            "step `{}` refers to `steps.{name}`, which does not exist",
                            steps[step].id
                        ),
                        hint,
                    );
                }
                Some(target) if target == step && !is_assert => {
                    self.error(
                        Span::at(pos),
                        format!("step `{name}` refers to its own output before it runs"),
                        "use `output` inside `assert:` to check a step's own result",
                    );
                }
                Some(target) if target != step => {
                    if let Some(dag) = dag
                        && !dag.precedes(target, step)
                        && !steps[step].compensation
                    {
                        self.error(
                                Span::at(pos),
                                format!("step `{}` reads `steps.{name}`, which is not guaranteed to run before it", steps[step].id),
                                format!("add `{name}` to `needs` of `{}`", steps[step].id),
                            );
                    }
                }
                Some(_) => {}
            }
        }
        for (name, offset) in references(&text.value, "params") {
            if !params.contains(&name.as_str()) {
                let pos = file_pos(text.text_start(), text.span.is_single_line(), offset, 1, 1);
                let hint = match suggest::closest(&name, params.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "declare it under `params:` (declared: {})",
                        if params.is_empty() {
                            "none".to_string()
                        } else {
                            params.join(", ")
                        }
                    ),
                };
                self.error(
                    Span::at(pos),
                    format!("`params.{name}` is not a declared parameter"),
                    hint,
                );
            }
        }
    }
}

/// Every templated string inside a `with` tree, for reference checks.
fn collect_templates(node: &Node, out: &mut Vec<(Spanned<String>, bool)>) {
    match &node.value {
        Value::Str(s) if s.contains("${{") => out.push((
            Spanned {
                value: s.clone(),
                span: node.span,
                quoted: node.quoted,
            },
            false,
        )),
        Value::Seq(items) => items.iter().for_each(|i| collect_templates(i, out)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| collect_templates(v, out)),
        _ => {}
    }
}

/// Finds `root.name` and `root["name"]` references in expression text, with offsets.
fn references(text: &str, root: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let root_chars: Vec<char> = root.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + root_chars.len() < chars.len() {
        let boundary = i == 0
            || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.');
        if boundary && chars[i..i + root_chars.len()] == root_chars[..] {
            let mut j = i + root_chars.len();
            let name_start;
            let mut name = String::new();
            if chars.get(j) == Some(&'.') {
                j += 1;
                name_start = j;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    name.push(chars[j]);
                    j += 1;
                }
            } else if chars.get(j) == Some(&'[')
                && matches!(chars.get(j + 1), Some('"') | Some('\''))
            {
                let quote = chars[j + 1];
                j += 2;
                name_start = j;
                while j < chars.len() && chars[j] != quote {
                    name.push(chars[j]);
                    j += 1;
                }
            } else {
                i += 1;
                continue;
            }
            if !name.is_empty() {
                out.push((name, name_start));
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The steps an expression-bearing step reads, or `None` when `steps` is used in a
/// way other than `steps.<id>` / `steps["<id>"]` (then every output is bound).
fn step_reads<'t>(texts: impl Iterator<Item = &'t str>, ids: &[&str]) -> Option<Vec<usize>> {
    let mut reads = Vec::new();
    for text in texts {
        let refs = references(text, "steps");
        let mentions = text
            .match_indices("steps")
            .filter(|(i, _)| {
                let before = text[..*i].chars().next_back();
                let after = text[i + 5..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
            .count();
        if mentions > refs.len() {
            return None;
        }
        for (name, _) in refs {
            if let Some(i) = ids.iter().position(|id| *id == name)
                && !reads.contains(&i)
            {
                reads.push(i);
            }
        }
    }
    Some(reads)
}

fn type_matches(ty: ParamType, v: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match ty {
        ParamType::String => v.is_string(),
        ParamType::Number => v.is_number(),
        ParamType::Integer => v.is_i64() || v.is_u64(),
        ParamType::Boolean => v.is_boolean(),
        ParamType::List => matches!(v, J::Array(_)),
        ParamType::Map => matches!(v, J::Object(_)),
    }
}

/// Whether a value has the declared parameter type (exposed for resolving params).
pub fn param_type_matches(ty: ParamType, v: &serde_json::Value) -> bool {
    type_matches(ty, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        let r = references(
            "steps.a.output.value > steps[\"b-c\"].x && my_steps.z",
            "steps",
        );
        assert_eq!(r, vec![("a".to_string(), 6), ("b-c".to_string(), 30)]);
    }

    #[test]
    fn an_oversized_file_is_a_diagnostic_not_a_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let big = dir.path().join("big.yaml");
        // Sparse: the size is there, the disk is not used.
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
            .expect("big file");
        let bundle = Bundle::load(&big).expect("loads");
        assert!(bundle.has_errors());
        let d = &bundle.diagnostics[0];
        assert!(d.message.contains("larger than 16 MiB"), "{}", d.message);
        assert_eq!(read_capped(&big).expect("read"), None);
        // One byte less is read in full.
        std::fs::File::options()
            .write(true)
            .open(&big)
            .and_then(|f| f.set_len(MAX_FILE_BYTES))
            .expect("shrink");
        let bytes = read_capped(&big).expect("read").expect("under the cap");
        assert_eq!(bytes.len() as u64, MAX_FILE_BYTES);
    }
}
