//! What every resource's check shares: reporting a problem where it is, decoding a
//! node, names, expressions, templates and inputs.

use super::*;

impl Checker<'_> {
    pub(super) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub(super) fn error(
        &mut self,
        span: Span,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(self.file, span, message).with_hint(hint));
    }

    pub(super) fn de_error(&mut self, fallback: Span, e: DeError) {
        self.diags.push(
            Diagnostic::error(self.file, e.span.unwrap_or(fallback), e.message)
                .with_hint_opt(e.hint),
        );
    }

    pub(super) fn decode<T: serde::de::DeserializeOwned>(&mut self, node: &Node) -> Option<T> {
        match from_node(node) {
            Ok(v) => Some(v),
            Err(e) => {
                self.de_error(node.span, e);
                None
            }
        }
    }

    pub(super) fn api_version(&mut self, v: &Spanned<String>) {
        if v.value != API_VERSION {
            self.error(
                v.span,
                format!("unsupported apiVersion `{}`", v.value),
                format!("use `apiVersion: {API_VERSION}`"),
            );
        }
    }

    pub(super) fn name(&mut self, name: &Spanned<String>, what: &str) {
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
    pub(super) fn expression(
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
    pub(super) fn template(&mut self, text: &Spanned<String>, condition: bool) -> Option<Template> {
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

    pub(super) fn input(&mut self, node: &Node) -> Input {
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

    pub(super) fn string_list(&mut self, node: Option<&Node>, key: &str) -> Vec<Spanned<String>> {
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
}
