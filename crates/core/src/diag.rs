//! Diagnostics: what is wrong, where (file:line:col), and how to fix it.

use crate::span::Span;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Separates a message from its hint in errors raised through `serde::de::Error::custom`.
pub const HINT_SEPARATOR: char = '\u{1}';

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
    #[serde(skip)]
    pub span: Span,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Path, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: span.start.line,
            col: span.start.col,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(file: &Path, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic the way compilers do, with the offending source line
    /// underlined. `source` is the file's text (if available).
    pub fn render(&self, source: Option<&str>, color: bool) -> String {
        let (bold_red, bold_yellow, bold_blue, bold, reset) = if color {
            (
                "\x1b[1;31m",
                "\x1b[1;33m",
                "\x1b[1;34m",
                "\x1b[1m",
                "\x1b[0m",
            )
        } else {
            ("", "", "", "", "")
        };
        let (label, label_color) = match self.severity {
            Severity::Error => ("error", bold_red),
            Severity::Warning => ("warning", bold_yellow),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{label_color}{label}{reset}{bold}: {}{reset}",
            self.message
        );
        let _ = writeln!(
            out,
            "  {bold_blue}-->{reset} {}:{}:{}",
            self.file.display(),
            self.line,
            self.col
        );
        if let Some(text) = source.and_then(|s| s.lines().nth(self.line.saturating_sub(1) as usize))
        {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let col = self.col.max(1) as usize;
            let width = if self.span.is_single_line() && self.span.end.col > self.span.start.col {
                (self.span.end.col - self.span.start.col) as usize
            } else {
                text.chars().count().saturating_sub(col - 1).max(1)
            };
            let _ = writeln!(out, "{pad} {bold_blue}|{reset}");
            let _ = writeln!(out, "{bold_blue}{gutter} |{reset} {text}");
            let _ = writeln!(
                out,
                "{pad} {bold_blue}|{reset} {}{label_color}{}{reset}",
                " ".repeat(col - 1),
                "^".repeat(width.min(80))
            );
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "  {bold_blue}={reset} {bold}hint{reset}: {hint}");
        }
        out
    }
}

/// Diagnostics sorted by file and position, for stable output.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Pos;

    #[test]
    fn renders_source_line_with_caret() {
        let span = Span::new(Pos { line: 2, col: 3 }, Pos { line: 2, col: 7 });
        let d = Diagnostic::error(Path::new("rb.yaml"), span, "unknown key `neds`")
            .with_hint("did you mean `needs`?");
        let text = d.render(Some("a:\n  neds: [x]\n"), false);
        assert!(text.contains("--> rb.yaml:2:3"), "{text}");
        assert!(text.contains("2 |   neds: [x]"), "{text}");
        assert!(text.contains("  |   ^^^^\n"), "{text}");
        assert!(text.contains("hint: did you mean `needs`?"), "{text}");
    }
}
