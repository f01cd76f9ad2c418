//! Merging compose files in order (`docker compose -f a.yml -f b.yml`) and resolving `extends`,
//! by compose's rules: mappings merge key by key; `command`, `entrypoint` and a health check's
//! `test` are replaced; `environment`, `labels`, build `args` and `depends_on` merge as mappings
//! (their list forms read as mappings first); `volumes` and `secrets` of a service merge by their
//! target path; other lists are appended without duplicates; a scalar is replaced.

use super::yaml::{At, Key, Node, Value};

/// Keys whose value replaces the earlier one whole.
const REPLACED: &[&str] = &["command", "entrypoint", "test"];
/// Keys whose list form (`K=V` items, or names) is read as a mapping before merging.
const AS_MAPPING: &[&str] = &["environment", "labels", "args", "depends_on", "annotations", "sysctls"];

/// `over` merged onto `base`; `key` is the key both were found under.
pub(crate) fn merge(base: Node, over: Node, key: &str) -> Node {
    if REPLACED.contains(&key) {
        return over;
    }
    let (base, over) = if AS_MAPPING.contains(&key) {
        (as_mapping(base, key == "depends_on"), as_mapping(over, key == "depends_on"))
    } else {
        (base, over)
    };
    match (base.value, over.value) {
        (Value::Map(mut entries), Value::Map(overs)) => {
            for (k, v) in overs {
                match entries.iter().position(|(e, _)| e.name == k.name) {
                    Some(i) => {
                        let (ek, ev) = entries.remove(i);
                        let merged = merge(ev, v, &k.name);
                        entries.insert(i, (Key { at: k.at.clone(), ..ek }, merged));
                    }
                    None => entries.push((k, v)),
                }
            }
            Node::new(Value::Map(entries), over.at)
        }
        (Value::Seq(mut items), Value::Seq(overs)) if key == "volumes" || key == "secrets" || key == "configs" => {
            for o in overs {
                let target = mount_target(&o);
                match items.iter().position(|i| target.is_some() && mount_target(i) == target) {
                    Some(i) => items[i] = o,
                    None => items.push(o),
                }
            }
            Node::new(Value::Seq(items), over.at)
        }
        (Value::Seq(mut items), Value::Seq(overs)) => {
            for o in overs {
                if !items.iter().any(|i| i.value == o.value) {
                    items.push(o);
                }
            }
            Node::new(Value::Seq(items), over.at)
        }
        (_, value) => Node::new(value, over.at),
    }
}

/// Where a volume, secret or config entry lands in the container, to merge entries by it.
fn mount_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } => {
            let parts: Vec<&str> = text.split(':').collect();
            Some(match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            })
        }
        Value::Map(_) => n.get("target").or_else(|| n.get("source")).and_then(Node::as_str).map(str::to_string),
        _ => None,
    }
}

/// The list form of a mapping key as a mapping: `["A=1", "B"]` → `{A: "1", B: null}`; for
/// `depends_on`, `[db]` → `{db: {condition: service_started}}`.
pub(crate) fn as_mapping(n: Node, depends_on: bool) -> Node {
    let Value::Seq(items) = n.value else { return n };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    for item in items {
        let Value::Scalar { text, .. } = &item.value else {
            // Left for the mapper, which says what is wrong with it.
            entries.push((Key { name: String::new(), at: item.at.clone() }, item));
            continue;
        };
        let (name, value) = if depends_on {
            let condition = Node::new(Value::Scalar { text: "service_started".into(), plain: true }, item.at.clone());
            let key = Key { name: "condition".into(), at: item.at.clone() };
            (text.clone(), Node::new(Value::Map(vec![(key, condition)]), item.at.clone()))
        } else {
            match text.split_once('=') {
                Some((k, v)) => {
                    (k.to_string(), Node::new(Value::Scalar { text: v.to_string(), plain: false }, item.at.clone()))
                }
                None => (text.clone(), Node::new(Value::Null, item.at.clone())),
            }
        };
        entries.retain(|(k, _)| k.name != name);
        entries.push((Key { name, at: item.at.clone() }, value));
    }
    Node::new(Value::Map(entries), n.at)
}

/// An empty mapping written at `at`.
pub(crate) fn empty_map(at: At) -> Node {
    Node::new(Value::Map(Vec::new()), at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn parse(t: &str) -> Node {
        super::super::yaml::parse(t, &Arc::from("f.yml")).unwrap()
    }

    #[test]
    fn compose_merge_rules() {
        let a = parse(
            "services:\n  api:\n    image: a:1\n    command: [serve, --old]\n    environment: [A=1, B=2]\n    ports: ['8080']\n    volumes: ['data:/var/lib', './x:/etc/x']\n    depends_on: [db]\n",
        );
        let b = parse(
            "services:\n  api:\n    image: a:2\n    command: [serve]\n    environment: {B: '3', C: '4'}\n    ports: ['8080', '9090']\n    volumes: ['other:/var/lib']\n    depends_on: {cache: {condition: service_healthy}}\n",
        );
        let m = merge(a, b, "");
        let api = m.get("services").unwrap().get("api").unwrap();
        assert_eq!(api.get("image").unwrap().as_str(), Some("a:2"));
        let cmd: Vec<_> = match &api.get("command").unwrap().value {
            Value::Seq(s) => s.iter().filter_map(Node::as_str).collect(),
            _ => vec![],
        };
        assert_eq!(cmd, ["serve"], "a command is replaced, not appended");
        let env = api.get("environment").unwrap();
        assert_eq!(env.get("A").unwrap().as_str(), Some("1"));
        assert_eq!(env.get("B").unwrap().as_str(), Some("3"));
        assert_eq!(env.get("C").unwrap().as_str(), Some("4"));
        assert!(matches!(&api.get("ports").unwrap().value, Value::Seq(s) if s.len() == 2));
        let vols: Vec<_> = match &api.get("volumes").unwrap().value {
            Value::Seq(s) => s.iter().filter_map(Node::as_str).collect(),
            _ => vec![],
        };
        assert_eq!(vols, ["other:/var/lib", "./x:/etc/x"], "merged by target");
        let deps = api.get("depends_on").unwrap();
        assert!(deps.get("db").is_some() && deps.get("cache").is_some());
        assert_eq!(api.get("image").unwrap().at.line, 3, "a merged value is said where the last file set it");
    }
}
