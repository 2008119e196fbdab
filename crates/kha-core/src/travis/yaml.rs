//! A YAML tree that remembers where each node came from.
//!
//! Every warning kha shows about a `.travis.yml` names a line and a column,
//! so the file is read from saphyr-parser's event stream into [`Node`]s that
//! carry their position. Anchors, aliases and `<<` merge keys are resolved
//! here (Travis docs: "Using YAML as a build configuration language" shows
//! both), so the config reader never sees them.
//!
//! Untrusted input meets this module first, hence its limits: nesting deeper
//! than [`MAX_DEPTH`] and trees larger than [`MAX_NODES`] (aliases can make a
//! small file expand exponentially) are refused, and the tree is built with
//! an explicit stack rather than recursion.
//!
//! What libyaml (Travis's parser, through Ruby's Psych) accepts, this module
//! accepts too: where saphyr-parser is stricter about a quoted scalar's
//! continuation lines, [`super::lenient`] re-indents them and maps the
//! positions back, and the file is read again.

use super::lenient::{self, Shifts};
use saphyr_parser::{Event, Marker, Parser, ScalarStyle};
use std::collections::HashMap;
use std::fmt;

/// Deepest nesting accepted; real `.travis.yml` files stay under ten.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a file may expand to once aliases are resolved.
pub const MAX_NODES: usize = 100_000;

/// A position in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Scalars keep their source text: Travis's config parser turns YAML
    /// numbers into strings (Travis docs: "Using YAML as a build
    /// configuration language", Version numbers), so `python: 3.10` stays
    /// `3.10`. `plain` is false for quoted and block scalars, which are
    /// never null nor booleans.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A position-free YAML value, for keys kha keeps without acting on them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Str(String),
    Seq(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Node {
    pub fn null(pos: Pos) -> Node {
        Node {
            kind: Kind::Scalar {
                text: String::new(),
                plain: true,
            },
            pos,
        }
    }

    /// Null in YAML's core schema: an empty plain scalar, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The text of a non-null scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// A boolean, as Travis's Ruby YAML parser (YAML 1.1) reads one: besides
    /// `true`/`false` it takes `yes`/`no` and `on`/`off`.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                    Some(false)
                }
                _ => None,
            },
            _ => None,
        }
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The entry named `key`, if this is a mapping that has one.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// What kind of node this is, for messages ("a mapping", …).
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "an empty value",
            Kind::Scalar { .. } => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn to_value(&self) -> Value {
        match &self.kind {
            Kind::Scalar { text, .. } => {
                if self.is_null() {
                    Value::Null
                } else {
                    Value::Str(text.clone())
                }
            }
            Kind::Seq(items) => Value::Seq(items.iter().map(Node::to_value).collect()),
            Kind::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_value()))
                    .collect(),
            ),
        }
    }

    /// Levels of nesting in this tree (a scalar is 1).
    fn height(&self) -> usize {
        1 + match &self.kind {
            Kind::Scalar { .. } => 0,
            Kind::Seq(items) => items.iter().map(Node::height).max().unwrap_or(0),
            Kind::Map(entries) => entries.iter().map(|e| e.value.height()).max().unwrap_or(0),
        }
    }

    /// Number of nodes in this tree; bounded by [`MAX_NODES`] and
    /// [`MAX_DEPTH`] for any tree this module builds.
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.size()).sum::<usize>(),
        }
    }
}

/// A file that is not YAML, or that kha refuses to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// The tree of the file's first document, with what was odd about it.
#[derive(Debug)]
pub struct Loaded {
    pub root: Node,
    pub warnings: Vec<(Pos, String)>,
}

/// Reads `text` into a positioned tree, as libyaml would read it (see
/// [`lenient::load`]).
pub fn load(text: &str) -> Result<Loaded, YamlError> {
    lenient::load(text)
}

/// Why one reading failed: saphyr refused the text (with where its last
/// event ended, as a character index), or the tree broke a rule of kha's.
pub(super) enum Failed {
    Scan {
        error: saphyr_parser::ScanError,
        last_end: usize,
    },
    Tree(YamlError),
}

impl From<YamlError> for Failed {
    fn from(e: YamlError) -> Failed {
        Failed::Tree(e)
    }
}

pub(super) fn load_once(text: &str, shifts: &Shifts) -> Result<Loaded, Failed> {
    let at = |m: &Marker| shifts.pos(m.line(), m.col());
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    let mut end = Pos { line: 1, column: 1 };
    let mut last_end = 0usize;
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|error| Failed::Scan { error, last_end })?;
        last_end = span.end.index();
        let pos = at(&span.start);
        end = pos;
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    // Travis reads one document (Ruby's YAML.load); say so
                    // rather than ignore the rest silently.
                    b.warnings.push((
                        pos,
                        "only the first YAML document of .travis.yml is read; this one is ignored"
                            .into(),
                    ));
                    break;
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                // An explicit `!!str` tag makes `true` or `~` a string.
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !tagged_str;
                b.count(1)?;
                let node = Node {
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        plain,
                    },
                    pos,
                };
                b.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some((_, size, height)) = b.anchors.get(&id) else {
                    return Err(YamlError {
                        pos: Some(pos),
                        message: "invalid YAML: alias to an unknown anchor".into(),
                    }
                    .into());
                };
                let (size, height) = (*size, *height);
                b.count(size)?;
                // An alias is as deep as what it names, wherever it is used:
                // keep the tree's depth bounded for the recursive readers.
                if b.stack.len() + height > MAX_DEPTH {
                    return Err(YamlError {
                        pos: Some(pos),
                        message: format!(
                            "YAML nested more than {MAX_DEPTH} levels deep (through aliases); kha refuses it"
                        ),
                    }
                    .into());
                }
                let Some(mut node) = b.anchors.get(&id).map(|(n, _, _)| n.clone()) else {
                    continue;
                };
                // The alias stands where it is used: point messages there.
                node.pos = pos;
                b.complete(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => b.open(Frame::Seq {
                pos,
                anchor,
                items: Vec::new(),
            })?,
            Event::MappingStart(anchor, _) => b.open(Frame::Map {
                pos,
                anchor,
                entries: Vec::new(),
                merges: Vec::new(),
                key: None,
            })?,
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = b.stack.pop() else {
                    return Err(YamlError {
                        pos: Some(pos),
                        message: "invalid YAML: unbalanced collection".into(),
                    }
                    .into());
                };
                let (node, anchor) = b.close(frame);
                b.complete(node, anchor)?;
            }
        }
    }
    let root = b.root.take().unwrap_or_else(|| Node::null(end));
    Ok(Loaded {
        root,
        warnings: b.warnings,
    })
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        /// Values of `<<` keys, applied when the mapping ends.
        merges: Vec<Node>,
        /// The key waiting for its value: name, position, and whether it is
        /// a usable key (a non-scalar key's value is dropped).
        key: Option<KeyState>,
    },
}

enum KeyState {
    Named { name: String, pos: Pos, merge: bool },
    Unusable,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Anchored nodes with their size and height.
    anchors: HashMap<usize, (Node, usize, usize)>,
    root: Option<Node>,
    nodes: usize,
    warnings: Vec<(Pos, String)>,
}

impl Builder {
    fn count(&mut self, n: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos: None,
                message: format!(
                    ".travis.yml expands to more than {MAX_NODES} YAML nodes (through aliases?); kha refuses it"
                ),
            });
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            let pos = match &frame {
                Frame::Seq { pos, .. } | Frame::Map { pos, .. } => *pos,
            };
            return Err(YamlError {
                pos: Some(pos),
                message: format!("YAML nested more than {MAX_DEPTH} levels deep; kha refuses it"),
            });
        }
        self.count(1)?;
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, frame: Frame) -> (Node, usize) {
        match frame {
            Frame::Seq { pos, anchor, items } => (
                Node {
                    kind: Kind::Seq(items),
                    pos,
                },
                anchor,
            ),
            Frame::Map {
                pos,
                anchor,
                entries,
                merges,
                ..
            } => {
                // Duplicate keys: Ruby's YAML keeps the last one; do the
                // same, but say so.
                let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
                for e in entries {
                    if let Some(i) = out.iter().position(|o| o.key == e.key) {
                        self.warnings.push((
                            e.key_pos,
                            format!(
                                "key `{}` is given twice (first at {}); the later value is used",
                                e.key, out[i].key_pos
                            ),
                        ));
                        out.remove(i);
                    }
                    out.push(e);
                }
                // `<<: *a` or `<<: [*a, *b]`: explicit keys win, then the
                // earlier merged mapping wins (YAML merge key semantics).
                for m in merges {
                    let sources: Vec<Node> = match m.kind {
                        Kind::Map(_) => vec![m],
                        Kind::Seq(items) => items,
                        _ => {
                            self.warnings.push((
                                m.pos,
                                "`<<` merges a mapping or a list of mappings; this value is ignored"
                                    .into(),
                            ));
                            vec![]
                        }
                    };
                    for src in sources {
                        match src.kind {
                            Kind::Map(src_entries) => {
                                for e in src_entries {
                                    if !out.iter().any(|o| o.key == e.key) {
                                        out.push(e);
                                    }
                                }
                            }
                            _ => self.warnings.push((
                                src.pos,
                                "`<<` merges mappings only; this item is ignored".into(),
                            )),
                        }
                    }
                }
                (
                    Node {
                        kind: Kind::Map(out),
                        pos,
                    },
                    anchor,
                )
            }
        }
    }

    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            let (size, height) = (node.size(), node.height());
            self.anchors.insert(anchor, (node.clone(), size, height));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    *key = Some(match &node.kind {
                        Kind::Scalar { text, plain } => KeyState::Named {
                            name: text.clone(),
                            pos: node.pos,
                            merge: *plain && text == "<<",
                        },
                        _ => {
                            self.warnings.push((
                                node.pos,
                                format!(
                                    "a key must be a name, not {}; this entry is ignored",
                                    node.describe()
                                ),
                            ));
                            KeyState::Unusable
                        }
                    });
                }
                Some(KeyState::Unusable) => {}
                Some(KeyState::Named { merge: true, .. }) => merges.push(node),
                Some(KeyState::Named { name, pos, .. }) => entries.push(Entry {
                    key: name,
                    key_pos: pos,
                    value: node,
                }),
            },
        }
        Ok(())
    }
}

/// As JSON-shaped data: null, a string, a list, or a mapping (keys in
/// their order), so a plugin reads what the file said.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => s.serialize_unit(),
            Value::Str(t) => s.serialize_str(t),
            Value::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for it in items {
                    seq.serialize_element(it)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, a string, a list or a mapping")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Value::Seq(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    out.push((k, v));
                }
                Ok(Value::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
