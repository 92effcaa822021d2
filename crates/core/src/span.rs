//! Source positions. Every node parsed from YAML keeps where it came from, so a
//! diagnostic can point at `file:line:col` without searching the text again.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A half-open range of source positions.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    pub fn new(start: Pos, end: Pos) -> Self {
        Span { start, end }
    }

    /// A span covering a single position.
    pub fn at(pos: Pos) -> Self {
        Span {
            start: pos,
            end: pos,
        }
    }

    /// Whether the span lies on one line, so column offsets inside it are exact.
    pub fn is_single_line(&self) -> bool {
        self.start.line == self.end.line
    }

    /// The position `chars` characters to the right of the start, on the same line.
    pub fn offset(&self, chars: usize) -> Pos {
        Pos {
            line: self.start.line,
            col: self.start.col.saturating_add(chars as u32),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}
