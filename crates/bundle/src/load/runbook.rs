//! Runbooks: params, trigger, steps and what their templates refer to, the step graph.

use super::*;

/// Every templated string inside a `with` tree, for reference checks.
pub(super) fn collect_templates(node: &Node, out: &mut Vec<(Spanned<String>, bool)>) {
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
pub(super) fn references(text: &str, root: &str) -> Vec<(String, usize)> {
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
pub(super) fn step_reads<'t>(
    texts: impl Iterator<Item = &'t str>,
    ids: &[&str],
) -> Option<Vec<usize>> {
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

pub(super) fn type_matches(ty: ParamType, v: &serde_json::Value) -> bool {
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

impl Checker<'_> {
    pub(super) fn runbook(&mut self, doc: &Node) -> Option<Runbook> {
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

    pub(super) fn params(&mut self, node: Option<&Node>) -> Vec<Param> {
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

    pub(super) fn trigger(&mut self, node: &Node) -> Vec<Matcher> {
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

    pub(super) fn step(
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

    /// Checks `steps.X` and `params.Y` references in one expression-bearing value.
    pub(super) fn references(
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
