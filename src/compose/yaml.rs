//! A compose file as a tree of YAML nodes that remember their file and line, built from
//! yaml-rust2's parser events: anchors and aliases resolved, merge keys (`<<: *base`) applied,
//! duplicate keys refused, and bounded (depth, size, alias expansion) so no input can exhaust the
//! stack or memory.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Problem;

/// Deepest nesting accepted (compose files are a few levels deep).
const MAX_DEPTH: usize = 64;
/// Most nodes one file may expand to, aliases included (a "billion laughs" stops here).
const MAX_NODES: usize = 200_000;
/// Largest file read.
pub(crate) const MAX_FILE_BYTES: usize = 4 << 20;

/// Where a node was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct At {
    pub file: Arc<str>,
    pub line: usize,
}

/// A YAML node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub at: At,
}

/// A node's value. Scalars stay text; `plain` tells an unquoted one (where `true`, `null` and
/// numbers are what they look like) from a quoted one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub at: At,
}

impl Node {
    pub(crate) fn new(value: Value, at: At) -> Node {
        Node { value, at }
    }

    /// The entries of a mapping, `None` for anything else.
    pub(crate) fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A scalar's text, `None` for anything else (or null).
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// What kind of node it is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    fn count(&self) -> usize {
        match &self.value {
            Value::Null | Value::Scalar { .. } => 1,
            Value::Seq(s) => s.iter().fold(1usize, |n, c| n.saturating_add(c.count())),
            Value::Map(m) => m.iter().fold(1usize, |n, (_, c)| n.saturating_add(c.count())),
        }
    }
}

struct Events(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

enum Frame {
    Seq { items: Vec<Node>, at: At, anchor: usize },
    Map { entries: Vec<(Key, Node)>, key: Option<Key>, at: At, anchor: usize },
}

/// Parses one YAML document (an empty file is an empty mapping).
pub(crate) fn parse(text: &str, file: &Arc<str>) -> Result<Node, Problem> {
    let at = |m: &Marker| At { file: file.clone(), line: m.line() };
    let problem =
        |line: usize, reason: String| Problem { at: At { file: file.clone(), line }, key: String::new(), reason };
    let mut events = Events(Vec::new());
    Parser::new_from_str(text)
        .load(&mut events, false)
        .map_err(|e| problem(e.marker().line(), format!("not valid YAML: {}", e.info())))?;
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    for (ev, mark) in events.0 {
        let done = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && tag.is_none();
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                let node = Node::new(value, at(&mark));
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| problem(mark.line(), "an alias names no anchor defined before it".into()))?;
                nodes = nodes.saturating_add(node.count());
                Some(Node { at: at(&mark), ..node })
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(problem(mark.line(), format!("nested deeper than {MAX_DEPTH} levels")));
                }
                stack.push(Frame::Seq { items: Vec::new(), at: at(&mark), anchor });
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(problem(mark.line(), format!("nested deeper than {MAX_DEPTH} levels")));
                }
                stack.push(Frame::Map { entries: Vec::new(), key: None, at: at(&mark), anchor });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, at, anchor }) => {
                    let node = Node::new(Value::Seq(items), at);
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    Some(node)
                }
                _ => return Err(problem(mark.line(), "unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { entries, at, anchor, .. }) => {
                    let node = Node::new(Value::Map(apply_merge_keys(entries)?), at);
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    Some(node)
                }
                _ => return Err(problem(mark.line(), "unbalanced mapping".into())),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => None,
        };
        let Some(node) = done else { continue };
        nodes = nodes.saturating_add(1);
        if nodes > MAX_NODES {
            return Err(problem(mark.line(), format!("expands to more than {MAX_NODES} nodes (aliases included)")));
        }
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return Err(problem(mark.line(), "holds more than one YAML document".into()));
                }
                root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let name = match &node.value {
                        Value::Scalar { text, .. } => text.clone(),
                        Value::Null => String::new(),
                        _ => return Err(problem(node.at.line, "a mapping key must be a plain value".into())),
                    };
                    if name != "<<" && entries.iter().any(|(k, _)| k.name == name) {
                        return Err(Problem {
                            at: node.at.clone(),
                            key: name.clone(),
                            reason: format!("key `{name}` is given twice in the same mapping"),
                        });
                    }
                    *key = Some(Key { name, at: node.at });
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root.unwrap_or_else(|| Node::new(Value::Map(Vec::new()), At { file: file.clone(), line: 1 })))
}

/// YAML merge keys: the entries of `<<: *base` (or a list of bases, earlier ones first) are added
/// where the mapping does not set the key itself.
fn apply_merge_keys(entries: Vec<(Key, Node)>) -> Result<Vec<(Key, Node)>, Problem> {
    if !entries.iter().any(|(k, _)| k.name == "<<") {
        return Ok(entries);
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k.name == "<<");
    for (key, value) in merges {
        let bases = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            _ => {
                return Err(Problem {
                    at: key.at,
                    key: "<<".into(),
                    reason: "a merge key takes a mapping or a list of mappings".into(),
                })
            }
        };
        for base in bases {
            let Value::Map(base_entries) = base.value else {
                return Err(Problem {
                    at: base.at,
                    key: "<<".into(),
                    reason: "a merge key takes a mapping or a list of mappings".into(),
                });
            };
            for (k, v) in base_entries {
                if !own.iter().any(|(o, _)| o.name == k.name) {
                    own.push((k, v));
                }
            }
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<str> {
        Arc::from("compose.yml")
    }

    #[test]
    fn nodes_know_their_line_and_anchors_merge() {
        let text = "x-base: &base\n  image: a\n  restart: always\nservices:\n  web:\n    <<: *base\n    image: b\n";
        let root = parse(text, &file()).unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().as_str(), Some("b"), "own keys win over merged ones");
        assert_eq!(web.get("restart").unwrap().as_str(), Some("always"));
        assert_eq!(web.get("image").unwrap().at.line, 7);
    }

    #[test]
    fn hostile_documents_are_refused_not_crashed_on() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep, &file()).is_err());
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..12 {
            let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
            laughs.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = parse(&laughs, &file()).unwrap_err();
        assert!(err.reason.contains("expands"), "{err:?}");
        let dup = parse("a: 1\na: 2\n", &file()).unwrap_err();
        assert_eq!(dup.at.line, 2);
        assert!(parse("a: *nowhere\n", &file()).is_err());
        assert!(parse("? [a]\n: 1\n", &file()).is_err());
        assert_eq!(parse("", &file()).unwrap().as_map().map(<[_]>::len), Some(0));
    }
}
