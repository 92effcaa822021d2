//! `${{ … }}` templates: literal text with embedded expressions.
//!
//! A template that is exactly one expression evaluates to that expression's value
//! (a number stays a number); a template mixing text and expressions is a string.

use vigil_core::span::Pos;

#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    Text(String),
    /// An expression's source, and the character offset of its first character in the
    /// template string (for mapping expression errors back to the file).
    Expr {
        source: String,
        offset: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TemplateError {
    pub message: String,
    pub hint: String,
    /// Character offset in the template string.
    pub offset: usize,
}

impl Template {
    /// Splits `text` into literal and expression segments.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut consumed_chars = 0usize;
        while let Some(open) = rest.find("${{") {
            if open > 0 {
                segments.push(Segment::Text(rest[..open].to_string()));
            }
            let open_chars = consumed_chars + rest[..open].chars().count();
            let after = &rest[open + 3..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    message: "`${{` without closing `}}`".into(),
                    hint: "close the expression with `}}`, e.g. `${{ params.service }}`".into(),
                    offset: open_chars,
                });
            };
            let inner = &after[..close];
            let leading_ws = inner.len() - inner.trim_start().len();
            let source = inner.trim().to_string();
            if source.is_empty() {
                return Err(TemplateError {
                    message: "empty expression `${{ }}`".into(),
                    hint: "put an expression between the braces, e.g. `${{ params.service }}`"
                        .into(),
                    offset: open_chars,
                });
            }
            segments.push(Segment::Expr {
                offset: open_chars + 3 + inner[..leading_ws].chars().count(),
                source,
            });
            consumed_chars = open_chars + 3 + after[..close + 2].chars().count();
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_string()));
        }
        Ok(Template { segments })
    }

    /// Parses a condition (`when:`/`assert:`): either a template or a bare expression.
    pub fn parse_condition(text: &str) -> Result<Template, TemplateError> {
        if text.contains("${{") {
            Template::parse(text)
        } else {
            let leading_ws = text.len() - text.trim_start().len();
            Ok(Template {
                segments: vec![Segment::Expr {
                    source: text.trim().to_string(),
                    offset: leading_ws,
                }],
            })
        }
    }

    pub fn has_expressions(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Expr { .. }))
    }

    /// The single expression, when the template is nothing but one expression.
    pub fn sole_expression(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Expr { source, .. }] => Some(source),
            _ => None,
        }
    }

    pub fn expressions(&self) -> impl Iterator<Item = (&str, usize)> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Expr { source, offset } => Some((source.as_str(), *offset)),
            Segment::Text(_) => None,
        })
    }
}

/// Maps a position inside an expression to a file position, exactly when the scalar
/// sits on one line (block scalars fall back to the scalar's start).
pub fn file_pos(
    text_start: Pos,
    single_line: bool,
    offset: usize,
    expr_line: usize,
    expr_col: usize,
) -> Pos {
    if single_line && expr_line <= 1 {
        Pos {
            line: text_start.line,
            col: text_start.col + (offset + expr_col.saturating_sub(1)) as u32,
        }
    } else {
        text_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_expressions() {
        let t = Template::parse("up{job=\"${{ params.service }}\"}").unwrap();
        assert_eq!(t.segments.len(), 3);
        assert_eq!(
            t.segments[1],
            Segment::Expr {
                source: "params.service".into(),
                offset: 12
            }
        );
        assert_eq!(
            Template::parse("${{ 1 + 1 }}").unwrap().sole_expression(),
            Some("1 + 1")
        );
        assert!(!Template::parse("plain").unwrap().has_expressions());
    }

    #[test]
    fn unclosed_expression_is_an_error_at_its_start() {
        let e = Template::parse("abc ${{ params.x").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("without closing"));
    }

    #[test]
    fn bare_conditions_are_expressions() {
        let t = Template::parse_condition("steps.a.output.value > 2").unwrap();
        assert_eq!(t.sole_expression(), Some("steps.a.output.value > 2"));
    }
}
