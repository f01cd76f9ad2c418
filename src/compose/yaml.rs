//! A compose file as a tree of YAML nodes that remember their file and line.
//!
//! The events are libyaml's (`libyaml.rs`): the parser under PyYAML (which docker-compose 1.x
//! uses) and the one go-yaml (Docker Compose v2's) was ported from, so a file parses here exactly
//! when it parses there (a flow sequence whose `]` sits at its key's indentation included). On
//! its events: anchors and aliases resolved, merge keys
//! (`<<: *base`) applied, duplicate keys refused, the `!reset` and `!override` tags of override
//! files kept, and bounds (depth, nodes after aliases) so no input exhausts the stack or memory.
//! Every step is linear in the size of the file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::libyaml::{Event, Parser};
use super::Problem;

/// Deepest nesting accepted (compose files are a few levels deep).
const MAX_DEPTH: usize = 64;
/// Most nodes one file may expand to, aliases included (a "billion laughs" stops here).
const MAX_NODES: usize = 500_000;
/// Largest file read.
pub(crate) const MAX_FILE_BYTES: usize = 8 << 20;

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
    /// The compose merge tag it carries (`!reset`, `!override`).
    pub tag: Tag,
}

/// The compose merge tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Tag {
    #[default]
    None,
    /// `!reset`: an override file removes the value.
    Reset,
    /// `!override`: an override file replaces the value whole instead of merging.
    Override,
}

/// A node's value. Scalars stay text; `plain` tells an unquoted, untagged one (where `true`,
/// `null` and numbers are what they look like) from a quoted one.
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
        Node { value, at, tag: Tag::None }
    }

    /// A string scalar (not plain: never read as a number or boolean).
    pub(crate) fn text(text: impl Into<String>, at: At) -> Node {
        Node::new(Value::Scalar { text: text.into(), plain: false }, at)
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

enum Frame {
    Seq {
        items: Vec<Node>,
        at: At,
        anchor: Option<String>,
        tag: Tag,
    },
    Map {
        entries: Vec<(Key, Node)>,
        names: HashSet<String>,
        key: Option<Key>,
        at: At,
        anchor: Option<String>,
        tag: Tag,
    },
}

fn tag_of(tag: &Option<String>) -> Tag {
    match tag.as_deref() {
        Some("!reset") => Tag::Reset,
        Some("!override") => Tag::Override,
        _ => Tag::None,
    }
}

/// Parses one YAML document (an empty file is an empty mapping).
pub(crate) fn parse(text: &str, file: &Arc<str>) -> Result<Node, Problem> {
    let at = |line: usize| At { file: file.clone(), line };
    let problem =
        |line: usize, reason: String| Problem { at: At { file: file.clone(), line }, key: String::new(), reason };
    let mut parser =
        Parser::new(text.as_bytes()).ok_or_else(|| problem(0, "the YAML parser could not be created".into()))?;
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<String, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    loop {
        let (event, line) =
            parser.next_event().map_err(|e| problem(e.line, format!("not valid YAML: {}", e.message)))?;
        let done = match event {
            Event::StreamEnd => break,
            Event::Scalar { anchor, tag, value, plain } => {
                let plain = plain && tag.is_none();
                let value = if plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar { text: value, plain }
                };
                let node = Node { value, at: at(line), tag: tag_of(&tag) };
                if let Some(a) = anchor {
                    anchors.insert(a, node.clone());
                }
                Some(node)
            }
            Event::Alias { anchor } => {
                let node = anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| problem(line, format!("alias *{anchor} names no anchor defined before it")))?;
                nodes = nodes.saturating_add(node.count());
                Some(Node { at: at(line), ..node })
            }
            Event::SequenceStart { anchor, tag } => {
                if stack.len() >= MAX_DEPTH {
                    return Err(problem(line, format!("nested deeper than {MAX_DEPTH} levels")));
                }
                stack.push(Frame::Seq { items: Vec::new(), at: at(line), anchor, tag: tag_of(&tag) });
                None
            }
            Event::MappingStart { anchor, tag } => {
                if stack.len() >= MAX_DEPTH {
                    return Err(problem(line, format!("nested deeper than {MAX_DEPTH} levels")));
                }
                let tag = tag_of(&tag);
                let frame =
                    Frame::Map { entries: Vec::new(), names: HashSet::new(), key: None, at: at(line), anchor, tag };
                stack.push(frame);
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, at, anchor, tag }) => {
                    let node = Node { value: Value::Seq(items), at, tag };
                    if let Some(a) = anchor {
                        anchors.insert(a, node.clone());
                    }
                    Some(node)
                }
                _ => return Err(problem(line, "unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { entries, names, at, anchor, tag, .. }) => {
                    let node = Node { value: Value::Map(apply_merge_keys(entries, names)?), at, tag };
                    if let Some(a) = anchor {
                        anchors.insert(a, node.clone());
                    }
                    Some(node)
                }
                _ => return Err(problem(line, "unbalanced mapping".into())),
            },
            Event::Other => None,
        };
        let Some(node) = done else { continue };
        nodes = nodes.saturating_add(1);
        if nodes > MAX_NODES {
            return Err(problem(node.at.line, format!("expands to more than {MAX_NODES} nodes (aliases included)")));
        }
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return Err(problem(node.at.line, "holds more than one YAML document".into()));
                }
                root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, names, key, .. }) => match key.take() {
                None => {
                    let name = match &node.value {
                        Value::Scalar { text, .. } => text.clone(),
                        Value::Null => String::new(),
                        _ => return Err(problem(node.at.line, "a mapping key must be a plain value".into())),
                    };
                    if name != "<<" && !names.insert(name.clone()) {
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
fn apply_merge_keys(entries: Vec<(Key, Node)>, names: HashSet<String>) -> Result<Vec<(Key, Node)>, Problem> {
    if !entries.iter().any(|(k, _)| k.name == "<<") {
        return Ok(entries);
    }
    let mut have = names;
    let (merges, mut own): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k.name == "<<");
    let refuse =
        |at: At| Problem { at, key: "<<".into(), reason: "a merge key takes a mapping or a list of mappings".into() };
    for (key, value) in merges {
        let bases = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            _ => return Err(refuse(key.at)),
        };
        for base in bases {
            let Value::Map(base_entries) = base.value else { return Err(refuse(base.at)) };
            for (k, v) in base_entries {
                if have.insert(k.name.clone()) {
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
    fn what_libyaml_accepts_is_accepted() {
        // A flow sequence closed at its key's indentation (yaml-rust2 refused it; libyaml takes it).
        let text = "services:\n  web:\n    command: [\n      \"a\",\n      \"b\"\n    ]\n    image: x\n";
        let root = parse(text, &file()).unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        assert!(matches!(&web.get("command").unwrap().value, Value::Seq(s) if s.len() == 2));
        assert_eq!(web.get("image").unwrap().as_str(), Some("x"));
        let root = parse("a:\n  b: {\n  x: 1\n  }\n", &file()).unwrap();
        assert!(root.get("a").unwrap().get("b").unwrap().get("x").is_some());
        // Tags of override files, and quoted scalars that are never numbers or booleans.
        let root = parse("a: !reset []\nb: !override\n  - x\nc: 'true'\nd: true\ne: !!str 1\n", &file()).unwrap();
        assert_eq!(root.get("a").unwrap().tag, Tag::Reset);
        assert_eq!(root.get("b").unwrap().tag, Tag::Override);
        assert!(matches!(root.get("c").unwrap().value, Value::Scalar { plain: false, .. }));
        assert!(matches!(root.get("d").unwrap().value, Value::Scalar { plain: true, .. }));
        assert!(matches!(root.get("e").unwrap().value, Value::Scalar { plain: false, .. }));
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
        assert!(parse("a: 1\n---\nb: 2\n", &file()).is_err());
        assert_eq!(parse("", &file()).unwrap().as_map().map(<[_]>::len), Some(0));
        let bad = parse("a: [1, 2\nb: 3\n", &file()).unwrap_err();
        assert!(bad.reason.starts_with("not valid YAML"), "{bad:?}");
    }
}
