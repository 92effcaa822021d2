//! A YAML tree that remembers where every node came from.
//!
//! Built from `saphyr-parser`'s event stream (a YAML 1.2 parser that reports
//! spans), then deserialised into typed resources through [`super::de`]. Keeping
//! spans on every node is what lets diagnostics point at a line and column.

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};
use std::collections::HashMap;
use vigil_core::span::{Pos, Span};

/// How many nodes aliases may expand to before we call it a "billion laughs" bomb.
const MAX_NODES: usize = 200_000;
/// How many bytes of scalar text the document may hold once aliases are expanded:
/// a few aliases of one long string are a bomb too, with few nodes.
const MAX_EXPANDED_BYTES: usize = 8 << 20;
/// How deeply collections may nest; deeper input is refused instead of overflowing the stack.
const MAX_DEPTH: usize = 128;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML value with its source span.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
    /// The scalar was quoted (`'…'`/`"…"`), so its text starts one column after the span.
    pub quoted: bool,
}

impl Node {
    pub fn new(value: Value, span: Span) -> Self {
        Node {
            value,
            span,
            quoted: false,
        }
    }

    /// A short name of the node's type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The position of the first character of a scalar's text (after an opening quote).
    pub fn text_start(&self) -> Pos {
        self.span.offset(usize::from(self.quoted))
    }

    /// Converts to JSON, the lingua franca of inputs, outputs and expressions.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A mapping key as a string (YAML allows non-string keys; we print them).
    pub fn key_string(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: m.line() as u32,
        col: m.col() as u32 + 1,
    }
}

fn span(s: &saphyr_parser::Span) -> Span {
    Span {
        start: pos(&s.start),
        end: pos(&s.end),
    }
}

/// Resolves a plain (unquoted) scalar by YAML 1.2's core schema.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.') {
        let digits = text.trim_start_matches(['-', '+']);
        if let Some(hex) = digits.strip_prefix("0x") {
            if let Ok(v) = i64::from_str_radix(hex, 16) {
                return Value::Int(if text.starts_with('-') { -v } else { v });
            }
        } else if let Some(oct) = digits.strip_prefix("0o") {
            if let Ok(v) = i64::from_str_radix(oct, 8) {
                return Value::Int(if text.starts_with('-') { -v } else { v });
            }
        } else if digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.is_empty()
            && let Ok(v) = text.parse::<i64>()
        {
            return Value::Int(v);
        }
        let looks_numeric = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        if looks_numeric
            && text.bytes().any(|b| b.is_ascii_digit())
            && let Ok(v) = text.parse::<f64>()
        {
            return Value::Float(v);
        }
    }
    Value::Str(text.to_string())
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Scalar keys seen so far, with the line each was first defined on, so a
        /// duplicate is found without scanning every earlier key.
        seen: HashMap<ScalarKey, u32>,
        start: Pos,
        anchor: usize,
    },
}

/// A scalar key as compared for duplicates (floats by their bits).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ScalarKey {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

impl ScalarKey {
    fn of(node: &Node) -> Option<ScalarKey> {
        Some(match &node.value {
            Value::Null => ScalarKey::Null,
            Value::Bool(b) => ScalarKey::Bool(*b),
            Value::Int(i) => ScalarKey::Int(*i),
            Value::Float(f) => ScalarKey::Float(f.to_bits()),
            Value::Str(s) => ScalarKey::Str(s.clone()),
            Value::Seq(_) | Value::Map(_) => return None,
        })
    }
}

/// An anchored node with what expanding it once costs.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
}

impl Anchored {
    fn new(node: Node) -> Self {
        let (nodes, bytes) = size_of(&node);
        Anchored { node, nodes, bytes }
    }
}

/// Parses every document in `src` into spanned trees.
pub fn parse_documents(src: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Anchored> = HashMap::new();
    let mut node_count = 0usize;
    let mut expanded_bytes = 0usize;
    let mut current_doc: Option<Node> = None;

    for event in Parser::new_from_str(src) {
        let (event, ev_span) = event.map_err(|e| SyntaxError {
            message: e.info().to_string(),
            span: Span::at(pos(e.marker())),
        })?;
        let sp = span(&ev_span);
        let finished: Option<Node> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                current_doc = None;
                None
            }
            Event::DocumentEnd => {
                docs.push(
                    current_doc
                        .take()
                        .unwrap_or_else(|| Node::new(Value::Null, sp)),
                );
                None
            }
            Event::Alias(id) => {
                let anchored = anchors.get(&id).ok_or_else(|| SyntaxError {
                    message: "alias refers to an unknown anchor".into(),
                    span: sp,
                })?;
                node_count += anchored.nodes;
                expanded_bytes += anchored.bytes;
                if node_count > MAX_NODES {
                    return Err(SyntaxError {
                        message: format!(
                            "aliases expand to more than {MAX_NODES} nodes; refusing a document this large"
                        ),
                        span: sp,
                    });
                }
                if expanded_bytes > MAX_EXPANDED_BYTES {
                    return Err(SyntaxError {
                        message: format!(
                            "aliases expand to more than {} MiB of text; refusing a document this large (write the value once instead of aliasing it)",
                            MAX_EXPANDED_BYTES >> 20
                        ),
                        span: sp,
                    });
                }
                Some(Node {
                    span: sp,
                    ..anchored.node.clone()
                })
            }
            Event::Scalar(text, style, anchor, tag) => {
                node_count += 1;
                expanded_bytes += text.len();
                let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !tagged_str {
                    resolve_plain(&text)
                } else {
                    Value::Str(text.into_owned())
                };
                let node = Node {
                    value,
                    span: sp,
                    quoted,
                };
                if anchor != 0 {
                    anchors.insert(anchor, Anchored::new(node.clone()));
                }
                Some(node)
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        message: format!("collections nest deeper than {MAX_DEPTH} levels"),
                        span: sp,
                    });
                }
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    start: sp.start,
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        message: format!("collections nest deeper than {MAX_DEPTH} levels"),
                        span: sp,
                    });
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                    start: sp.start,
                    anchor,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    start,
                    anchor,
                }) => {
                    node_count += 1;
                    let node = Node::new(Value::Seq(items), Span::new(start, sp.end));
                    if anchor != 0 {
                        anchors.insert(anchor, Anchored::new(node.clone()));
                    }
                    Some(node)
                }
                _ => {
                    return Err(SyntaxError {
                        message: "unbalanced sequence".into(),
                        span: sp,
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    start,
                    anchor,
                    ..
                }) => {
                    node_count += 1;
                    let node = Node::new(Value::Map(entries), Span::new(start, sp.end));
                    if anchor != 0 {
                        anchors.insert(anchor, Anchored::new(node.clone()));
                    }
                    Some(node)
                }
                _ => {
                    return Err(SyntaxError {
                        message: "unbalanced mapping".into(),
                        span: sp,
                    });
                }
            },
        };
        if node_count > MAX_NODES {
            return Err(SyntaxError {
                message: format!("document has more than {MAX_NODES} nodes"),
                span: sp,
            });
        }
        if let Some(node) = finished {
            match stack.last_mut() {
                None => current_doc = Some(node),
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map {
                    entries, key, seen, ..
                }) => match key.take() {
                    None => {
                        let first = match ScalarKey::of(&node) {
                            Some(k) => seen.insert(k, node.span.start.line),
                            None => entries
                                .iter()
                                .find(|(k, _)| k.value == node.value)
                                .map(|(k, _)| k.span.start.line),
                        };
                        if let Some(line) = first {
                            return Err(SyntaxError {
                                message: format!(
                                    "duplicate key `{}` (first defined at line {line})",
                                    node.key_string(),
                                ),
                                span: node.span,
                            });
                        }
                        *key = Some(node);
                    }
                    Some(k) => entries.push((k, node)),
                },
            }
        }
    }
    Ok(docs)
}

/// Nodes and bytes of scalar text in a tree.
fn size_of(node: &Node) -> (usize, usize) {
    let add = |(n, b): (usize, usize), (n2, b2): (usize, usize)| (n + n2, b + b2);
    match &node.value {
        Value::Seq(items) => items.iter().map(size_of).fold((1, 0), add),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| add(size_of(k), size_of(v)))
            .fold((1, 0), add),
        Value::Str(s) => (1, s.len()),
        _ => (1, 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spans_and_resolves_scalars() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - 'y'\nc: 2.5\nd: true\ne: ~\n").unwrap();
        assert_eq!(docs.len(), 1);
        let root = &docs[0];
        assert_eq!(root.get("a").unwrap().value, Value::Int(1));
        let b = root.get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].span.start, Pos { line: 3, col: 5 });
        assert!(items[1].quoted);
        assert_eq!(items[1].text_start(), Pos { line: 4, col: 6 });
        assert_eq!(root.get("c").unwrap().value, Value::Float(2.5));
        assert_eq!(root.get("d").unwrap().value, Value::Bool(true));
        assert_eq!(root.get("e").unwrap().value, Value::Null);
    }

    #[test]
    fn rejects_duplicate_keys_and_alias_bombs() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
        assert_eq!(err.span.start.line, 3);

        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(
            parse_documents(&bomb)
                .unwrap_err()
                .message
                .contains("nodes")
        );
    }

    #[test]
    fn aliases_of_a_long_string_are_a_bomb_too() {
        // Few nodes, much text: 16 KiB aliased 2,000 times is 32 MiB expanded.
        let mut src = format!("a: &s \"{}\"\nb: [", "x".repeat(16 * 1024));
        src.push_str(&vec!["*s"; 2000].join(", "));
        src.push_str("]\n");
        let err = parse_documents(&src).unwrap_err();
        assert!(err.message.contains("MiB of text"), "{}", err.message);
        assert_eq!(err.span.start.line, 2);
        // A few aliases of the same string are fine.
        let mut ok = format!("a: &s \"{}\"\nb: [", "x".repeat(16 * 1024));
        ok.push_str(&vec!["*s"; 100].join(", "));
        ok.push_str("]\n");
        assert!(parse_documents(&ok).is_ok());
    }

    #[test]
    fn a_large_mapping_checks_duplicates_without_a_scan() {
        let mut src = String::new();
        for i in 0..60_000 {
            src.push_str(&format!("k{i}: {i}\n"));
        }
        assert!(parse_documents(&src).is_ok());
        src.push_str("k17: dup\n");
        let err = parse_documents(&src).unwrap_err();
        assert!(
            err.message
                .contains("duplicate key `k17` (first defined at line 18)"),
            "{}",
            err.message
        );
        // Keys equal as values, written differently, are duplicates.
        let err = parse_documents("1: a\n0x1: b\n").unwrap_err();
        assert!(err.message.contains("duplicate key"), "{}", err.message);
    }

    #[test]
    fn multiple_documents() {
        let docs = parse_documents("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }
}
