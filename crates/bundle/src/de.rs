//! A serde `Deserializer` over spanned YAML nodes.
//!
//! Typed resources derive `Deserialize` with `deny_unknown_fields`; this
//! deserializer attaches the span of the node (or key) being read to every error,
//! and turns serde's messages into diagnostics with a hint. [`Spanned<T>`] and
//! [`Node`] can be fields of a typed resource: they keep the source position (and,
//! for `Node`, the raw tree) for checks that run after deserialisation.

use super::yaml::{Node, Value};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use vigil_core::span::{Pos, Span};
use vigil_core::suggest;

const SPANNED_NAME: &str = "$__vigil_spanned";
const SPAN_FIELD: &str = "$__vigil_span";
const VALUE_FIELD: &str = "$__vigil_value";
pub use vigil_core::diag::HINT_SEPARATOR;

/// An error from deserialising a node, with the span it concerns.
#[derive(Clone, Debug, PartialEq)]
pub struct DeError {
    pub message: String,
    pub hint: Option<String>,
    pub span: Option<Span>,
}

impl DeError {
    pub fn new(message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            hint: None,
            span: None,
        }
    }

    fn at(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    /// A custom message may carry a hint after [`HINT_SEPARATOR`].
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        match text.split_once(HINT_SEPARATOR) {
            Some((message, hint)) => DeError {
                message: message.into(),
                hint: Some(hint.into()),
                span: None,
            },
            None => DeError::new(text),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown key `{field}`"),
            hint: Some(suggest::hint(field, expected.iter().copied())),
            span: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown value `{variant}`"),
            hint: Some(suggest::hint(variant, expected.iter().copied())),
            span: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing required key `{field}`"),
            hint: Some(format!("add `{field}: …` here")),
            span: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Map => "a mapping".to_string(),
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Unit => "null (an empty value)".to_string(),
            other => other.to_string(),
        };
        DeError::new(format!("expected {exp}, found {found}"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("key `{field}` is given twice"))
    }
}

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
    /// A quoted scalar: its text starts one column after `span.start`.
    pub quoted: bool,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned {
            value,
            span,
            quoted: false,
        }
    }

    pub fn text_start(&self) -> Pos {
        self.span.offset(usize::from(self.quoted))
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value read from vigil YAML")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let key: Option<String> = map.next_key()?;
                if key.as_deref() != Some(SPAN_FIELD) {
                    return Err(de::Error::custom(
                        "spanned values can only be read from vigil YAML",
                    ));
                }
                let [sl, sc, el, ec, quoted]: [u32; 5] = map.next_value()?;
                let _value_key: Option<String> = map.next_key()?;
                let value: T = map.next_value()?;
                Ok(Spanned {
                    value,
                    span: Span::new(Pos { line: sl, col: sc }, Pos { line: el, col: ec }),
                    quoted: quoted == 1,
                })
            }
        }
        d.deserialize_struct(
            SPANNED_NAME,
            &[SPAN_FIELD, VALUE_FIELD],
            V(std::marker::PhantomData),
        )
    }
}

/// The payload of a [`Node`] read through serde: its children are nodes again.
struct NodeValue(Value);

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NodeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<NodeValue, E> {
                Ok(NodeValue(Value::Null))
            }
            fn visit_none<E>(self) -> Result<NodeValue, E> {
                Ok(NodeValue(Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
                Ok(NodeValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
                Ok(NodeValue(Value::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
                Ok(NodeValue(
                    i64::try_from(v).map_or(Value::Float(v as f64), Value::Int),
                ))
            }
            fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
                Ok(NodeValue(Value::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
                Ok(NodeValue(Value::Str(v.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(NodeValue(Value::Seq(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Node>()? {
                    entries.push((k, map.next_value::<Node>()?));
                }
                Ok(NodeValue(Value::Map(entries)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<NodeValue>::deserialize(d)?;
        Ok(Node {
            value: s.value.0,
            span: s.span,
            quoted: s.quoted,
        })
    }
}

/// Deserialises a typed value from a node, with spans on errors.
pub fn from_node<'a, T: Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.at(node.span))
}

/// Serde's view of one node.
#[derive(Clone, Copy, Debug)]
pub struct NodeDe<'a>(pub &'a Node);

impl<'a> NodeDe<'a> {
    fn type_error(&self, expected: &str) -> DeError {
        DeError::new(format!("expected {expected}, found {}", self.0.type_name())).at(self.0.span)
    }
}

impl<'de, 'a> Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let span = self.0.span;
        match &self.0.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => v.visit_i64(*i),
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_str(s),
            Value::Seq(items) => v.visit_seq(SeqDe {
                items: items.iter(),
            }),
            Value::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    /// Scalars are accepted where text is expected (`version: 2` is the string "2"),
    /// as YAML authors expect; collections are not.
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let span = self.0.span;
        match &self.0.value {
            Value::Str(s) => v.visit_str(s),
            Value::Int(i) => v.visit_string(i.to_string()),
            Value::Float(f) => v.visit_string(f.to_string()),
            Value::Bool(b) => v.visit_string(b.to_string()),
            _ => Err(self.type_error("a string")),
        }
        .map_err(|e| e.at(span))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED_NAME {
            return v.visit_map(SpannedDe {
                node: self.0,
                step: 0,
            });
        }
        match &self.0.value {
            Value::Map(entries) => v
                .visit_map(MapDe {
                    entries: entries.iter(),
                    value: None,
                })
                .map_err(|e| e.at(self.0.span)),
            _ => Err(self.type_error("a mapping")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(_) => self.deserialize_any(v),
            // An empty value (`with:`) is an empty mapping.
            Value::Null => v.visit_map(MapDe {
                entries: [].iter(),
                value: None,
            }),
            _ => Err(self.type_error("a mapping")),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Seq(_) => self.deserialize_any(v),
            Value::Null => v.visit_seq(SeqDe { items: [].iter() }),
            _ => Err(self.type_error("a list")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let span = self.0.span;
        match &self.0.value {
            Value::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => v.visit_enum(EnumDe {
                key: &entries[0].0,
                value: &entries[0].1,
            }),
            _ => Err(self.type_error("one of the listed values")),
        }
        .map_err(|e: DeError| e.at(span))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de, 'a> SeqAccess<'de> for SeqDe<'a> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e| e.at(node.span)),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de, 'a> MapAccess<'de> for MapDe<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k))
                    .map(Some)
                    .map_err(|e| e.at(k.span))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| DeError::new("value requested before key"))?;
        seed.deserialize(NodeDe(node)).map_err(|e| e.at(node.span))
    }
}

/// Presents a node as the two magic fields [`Spanned`] reads.
struct SpannedDe<'a> {
    node: &'a Node,
    step: u8,
}

impl<'de, 'a> MapAccess<'de> for SpannedDe<'a> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = match self.step {
            0 => SPAN_FIELD,
            1 => VALUE_FIELD,
            _ => return Ok(None),
        };
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        self.step += 1;
        if self.step == 1 {
            let s = self.node.span;
            let fields = [
                s.start.line,
                s.start.col,
                s.end.line,
                s.end.col,
                u32::from(self.node.quoted),
            ];
            seed.deserialize(de::value::SeqDeserializer::new(fields.into_iter()))
        } else {
            seed.deserialize(NodeDe(self.node))
        }
    }
}

struct EnumDe<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let variant = seed
            .deserialize(NodeDe(self.key))
            .map_err(|e| e.at(self.key.span))?;
        Ok((variant, NodeDe(self.value)))
    }
}

impl<'de, 'a> de::VariantAccess<'de> for NodeDe<'a> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_struct("", fields, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Step {
        id: Spanned<String>,
        needs: Option<Vec<Spanned<String>>>,
        with: Option<Node>,
        count: Option<u32>,
    }

    fn parse(src: &str) -> Node {
        parse_documents(src).unwrap().remove(0)
    }

    #[test]
    fn unknown_key_points_at_the_key_with_a_suggestion() {
        let node = parse("id: a\nneds: [b]\n");
        let err = from_node::<Step>(&node).unwrap_err();
        assert_eq!(err.message, "unknown key `neds`");
        assert_eq!(err.hint.as_deref(), Some("did you mean `needs`?"));
        assert_eq!(err.span.unwrap().start, Pos { line: 2, col: 1 });
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let node = parse("id: a\ncount: lots\n");
        let err = from_node::<Step>(&node).unwrap_err();
        assert!(err.message.contains("expected u32"), "{}", err.message);
        assert_eq!(err.span.unwrap().start, Pos { line: 2, col: 8 });
    }

    #[test]
    fn missing_key_points_at_the_mapping() {
        let node = parse("x: 1\n---\nneeds: []\n");
        let _ = node;
        let node = parse_documents("needs: []\n").unwrap().remove(0);
        let err = from_node::<Step>(&node).unwrap_err();
        assert_eq!(err.message, "missing required key `id`");
        assert_eq!(err.span.unwrap().start.line, 1);
    }

    #[test]
    fn spanned_and_raw_nodes_survive() {
        let node = parse("id: 'a'\nneeds: [b, c]\nwith:\n  k: [1, 2]\n");
        let step: Step = from_node(&node).unwrap();
        assert_eq!(step.id.value, "a");
        assert!(step.id.quoted);
        assert_eq!(step.id.text_start(), Pos { line: 1, col: 6 });
        let needs = step.needs.unwrap();
        assert_eq!(needs[1].span.start, Pos { line: 2, col: 12 });
        let with = step.with.unwrap();
        assert_eq!(with.get("k").unwrap().span.start, Pos { line: 4, col: 6 });
    }
}
