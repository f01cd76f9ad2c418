//! Merging compose files in order (`docker compose -f a.yml -f b.yml`), and a service onto the
//! one it `extends`, by the Compose Specification's merge rules:
//!
//! | values | merged |
//! |---|---|
//! | mappings | key by key, recursively |
//! | `command`, `entrypoint`, `healthcheck.test` | replaced |
//! | `environment`, `labels`, `annotations`, `sysctls`, `build.args`, `build.labels`, `deploy.labels` (mapping or `K=V` list) | key by key, the later value wins |
//! | `depends_on`, a service's `networks` (list or mapping) | as mappings |
//! | `volumes`, `secrets`, `configs` | appended; an entry with the same target replaces the earlier one in place |
//! | `ports` | appended; the same port (address, host port, container port, protocol) once |
//! | `devices` | appended; one entry per container path |
//! | `dns`, `dns_opt`, `dns_search`, `env_file`, `tmpfs`, `label_file` (one value or a list) | appended, each value once |
//! | `cap_add`, `cap_drop`, `security_opt`, `expose`, `extra_hosts`, `links`, `profiles`, … | appended, each value once |
//! | `ulimits.NAME` | a mapping merged; a number replaces |
//! | `logging` | merged when both name the same driver (or one names none); replaced otherwise |
//! | `build` (a context path or a mapping) | as mappings |
//! | other lists | appended |
//! | scalars | replaced |
//! | a value tagged `!reset` | removed |
//! | a value tagged `!override` | replaces the earlier one whole |
//!
//! Each step is linear in the entries merged (keys are looked up by hash).

use std::collections::{HashMap, HashSet};

use super::yaml::{At, Key, Node, Tag, Value};

/// How the values under one path merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Deep,
    Replace,
    KeyValue,
    DependsOn,
    NamesMap,
    Unique(Unique),
    Ulimit,
    Logging,
    Build,
}

/// What makes two entries of a list the same entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unique {
    /// The whole value.
    Value,
    /// A mount's target path.
    Target,
    /// A secret's target (`/run/secrets/<name>` unless given).
    Secret,
    /// A config's target (`/<name>` unless given).
    Config,
    /// A port's address, host port, container port and protocol.
    Port,
    /// A device's container path.
    Device,
}

fn rule(path: &[&str]) -> Rule {
    match path {
        ["services", _, key] => match *key {
            "command" | "entrypoint" => Rule::Replace,
            "environment" | "labels" | "annotations" | "sysctls" | "storage_opt" => Rule::KeyValue,
            "depends_on" => Rule::DependsOn,
            "networks" => Rule::NamesMap,
            "volumes" => Rule::Unique(Unique::Target),
            "secrets" => Rule::Unique(Unique::Secret),
            "configs" => Rule::Unique(Unique::Config),
            "ports" => Rule::Unique(Unique::Port),
            "devices" => Rule::Unique(Unique::Device),
            "dns"
            | "dns_opt"
            | "dns_search"
            | "env_file"
            | "tmpfs"
            | "label_file"
            | "cap_add"
            | "cap_drop"
            | "security_opt"
            | "expose"
            | "extra_hosts"
            | "links"
            | "external_links"
            | "profiles"
            | "device_cgroup_rules"
            | "group_add"
            | "volumes_from" => Rule::Unique(Unique::Value),
            "logging" => Rule::Logging,
            "build" => Rule::Build,
            _ => Rule::Deep,
        },
        ["services", _, "healthcheck", "test"] => Rule::Replace,
        ["services", _, "build", "args" | "labels"] | ["services", _, "deploy", "labels"] => Rule::KeyValue,
        ["services", _, "build", "extra_hosts" | "tags" | "cache_from" | "cache_to"] => Rule::Unique(Unique::Value),
        ["services", _, "ulimits", _] => Rule::Ulimit,
        ["services", _, "networks", _, "aliases"] => Rule::Unique(Unique::Value),
        ["services", _, "deploy", "placement", "constraints" | "preferences"] => Rule::Unique(Unique::Value),
        _ => Rule::Deep,
    }
}

/// `over` merged onto `base`, both found under `path` (`[]` for whole files).
pub(crate) fn merge(base: Node, over: Node, path: &[&str]) -> Node {
    if over.tag == Tag::Override {
        return Node { tag: Tag::None, ..over };
    }
    match rule(path) {
        Rule::Replace => over,
        Rule::KeyValue => mappings(key_values(base), key_values(over), path),
        Rule::DependsOn => mappings(depends_on(base), depends_on(over), path),
        Rule::NamesMap => mappings(names_map(base), names_map(over), path),
        Rule::Unique(u) => unique(sequence(base), sequence(over), u),
        Rule::Ulimit => match (&base.value, &over.value) {
            (Value::Map(_), Value::Map(_)) => mappings(base, over, path),
            _ => over,
        },
        Rule::Logging => {
            let (a, b) = (base.get("driver").and_then(Node::as_str), over.get("driver").and_then(Node::as_str));
            if a.is_none() || b.is_none() || a == b {
                mappings(base, over, path)
            } else {
                over
            }
        }
        Rule::Build => mappings(build(base), build(over), path),
        Rule::Deep => match (&base.value, &over.value) {
            (Value::Map(_), Value::Map(_)) => mappings(base, over, path),
            (Value::Seq(_), Value::Seq(_)) => {
                let (Value::Seq(mut items), Value::Seq(more)) = (base.value, over.value) else { unreachable!() };
                items.extend(more);
                Node { value: Value::Seq(items), at: over.at, tag: Tag::None }
            }
            _ => over,
        },
    }
}

/// Two mappings merged key by key.
fn mappings(base: Node, over: Node, path: &[&str]) -> Node {
    let (Value::Map(mut entries), Value::Map(overs)) = (base.value, over.value) else {
        return over_value_or(over.at);
    };
    let mut index: HashMap<String, usize> = entries.iter().enumerate().map(|(i, (k, _))| (k.name.clone(), i)).collect();
    let mut removed = false;
    for (k, v) in overs {
        match index.get(&k.name) {
            Some(&i) if v.tag == Tag::Reset => {
                entries[i].1 = Node { value: Value::Null, at: v.at, tag: Tag::Reset };
                removed = true;
            }
            Some(&i) => {
                let (ek, ev) = std::mem::replace(&mut entries[i], (k.clone(), Node::new(Value::Null, k.at.clone())));
                let mut sub: Vec<&str> = path.to_vec();
                sub.push(&k.name);
                let merged = merge(ev, v, &sub);
                entries[i] = (Key { at: k.at, ..ek }, merged);
            }
            None => {
                index.insert(k.name.clone(), entries.len());
                entries.push((k, v));
            }
        }
    }
    if removed {
        entries.retain(|(_, v)| v.tag != Tag::Reset);
    }
    Node { value: Value::Map(entries), at: over.at, tag: Tag::None }
}

/// A merge of two mappings where one was not a mapping cannot happen (both are made mappings
/// first); an empty one stands in.
fn over_value_or(at: At) -> Node {
    Node::new(Value::Map(Vec::new()), at)
}

/// A list made of one value or a list (`dns: 8.8.8.8`).
fn sequence(n: Node) -> Node {
    match n.value {
        Value::Scalar { .. } | Value::Map(_) => {
            let at = n.at.clone();
            Node { value: Value::Seq(vec![n]), at, tag: Tag::None }
        }
        Value::Null => Node { value: Value::Seq(Vec::new()), at: n.at, tag: Tag::None },
        Value::Seq(_) => n,
    }
}

/// Appends `over`'s items to `base`'s; an item equal to an earlier one by `u` replaces it in
/// place.
fn unique(base: Node, over: Node, u: Unique) -> Node {
    let (Value::Seq(mut items), Value::Seq(more)) = (base.value, over.value) else {
        return over_value_or(over.at);
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut keep: Vec<Node> = Vec::with_capacity(items.len() + more.len());
    for item in items.drain(..).chain(more) {
        let Some(k) = unique_key(&item, u) else {
            keep.push(item);
            continue;
        };
        match seen.get(&k) {
            Some(&i) => keep[i] = item,
            None => {
                seen.insert(k, keep.len());
                keep.push(item);
            }
        }
    }
    Node { value: Value::Seq(keep), at: over.at, tag: Tag::None }
}

fn unique_key(n: &Node, u: Unique) -> Option<String> {
    match u {
        Unique::Value => match &n.value {
            Value::Scalar { text, .. } => Some(text.clone()),
            Value::Map(_) => n.get("path").and_then(Node::as_str).map(str::to_string),
            _ => None,
        },
        Unique::Target => mount_target(n),
        Unique::Secret | Unique::Config => {
            let (name, target) = match &n.value {
                Value::Scalar { text, .. } => (text.clone(), None),
                Value::Map(_) => (
                    n.get("source").and_then(Node::as_str)?.to_string(),
                    n.get("target").and_then(Node::as_str).map(str::to_string),
                ),
                _ => return None,
            };
            let t = target.unwrap_or(name);
            Some(match (t.starts_with('/'), u) {
                (true, _) => t,
                (false, Unique::Secret) => format!("/run/secrets/{t}"),
                (false, _) => format!("/{t}"),
            })
        }
        Unique::Port => port_key(n),
        Unique::Device => match &n.value {
            Value::Scalar { text, .. } => {
                let mut parts = text.split(':');
                let host = parts.next()?;
                Some(parts.next().unwrap_or(host).to_string())
            }
            Value::Map(_) => n.get("target").or_else(|| n.get("source")).and_then(Node::as_str).map(str::to_string),
            _ => None,
        },
    }
}

/// Where a volume entry lands in the container.
pub(crate) fn mount_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } => {
            let parts: Vec<&str> = text.split(':').collect();
            Some(match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            })
        }
        Value::Map(_) => n.get("target").and_then(Node::as_str).map(str::to_string),
        _ => None,
    }
}

/// A port entry's identity: `ip:published:target/protocol`.
fn port_key(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar { text, .. } => {
            let t = text.strip_suffix("/tcp").unwrap_or(text);
            Some(t.to_string())
        }
        Value::Map(_) => {
            let get = |k: &str| n.get(k).and_then(Node::as_str).unwrap_or_default().to_string();
            let proto = n.get("protocol").and_then(Node::as_str).unwrap_or("tcp");
            let mut key = String::new();
            if !get("host_ip").is_empty() {
                key.push_str(&format!("{}:", get("host_ip")));
            }
            if !get("published").is_empty() {
                key.push_str(&format!("{}:", get("published")));
            }
            key.push_str(&get("target"));
            if proto != "tcp" {
                key.push_str(&format!("/{proto}"));
            }
            Some(key)
        }
        _ => None,
    }
}

/// The list form of a mapping (`[A=1, B]`) as a mapping (`{A: "1", B: null}`); a later item
/// with the same key wins.
pub(crate) fn key_values(n: Node) -> Node {
    let Value::Seq(items) = n.value else { return n };
    let mut entries: Vec<(Key, Node)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let Value::Scalar { text, .. } = &item.value else {
            // Left for the mapper, which says what is wrong with it.
            entries.push((Key { name: String::new(), at: item.at.clone() }, item));
            continue;
        };
        let (name, value) = match text.split_once('=') {
            Some((k, v)) => (k.to_string(), Node::text(v, item.at.clone())),
            None => (text.clone(), Node::new(Value::Null, item.at.clone())),
        };
        let entry = (Key { name: name.clone(), at: item.at.clone() }, value);
        match index.get(&name) {
            Some(&i) => entries[i] = entry,
            None => {
                index.insert(name, entries.len());
                entries.push(entry);
            }
        }
    }
    Node { value: Value::Map(entries), at: n.at, tag: n.tag }
}

/// `depends_on: [db]` as `{db: {condition: service_started}}`.
pub(crate) fn depends_on(n: Node) -> Node {
    let Value::Seq(items) = n.value else { return n };
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for item in items {
        let Value::Scalar { text, .. } = &item.value else {
            entries.push((Key { name: String::new(), at: item.at.clone() }, item));
            continue;
        };
        if !seen.insert(text.clone()) {
            continue;
        }
        let condition = Node::text("service_started", item.at.clone());
        let key = Key { name: "condition".into(), at: item.at.clone() };
        let spec = Node::new(Value::Map(vec![(key, condition)]), item.at.clone());
        entries.push((Key { name: text.clone(), at: item.at.clone() }, spec));
    }
    Node { value: Value::Map(entries), at: n.at, tag: n.tag }
}

/// A list of names as a mapping of names to nothing (`networks: [a]` as `{a: null}`).
pub(crate) fn names_map(n: Node) -> Node {
    let Value::Seq(items) = n.value else { return n };
    let entries = items
        .into_iter()
        .map(|item| match &item.value {
            Value::Scalar { text, .. } => {
                (Key { name: text.clone(), at: item.at.clone() }, Node::new(Value::Null, item.at.clone()))
            }
            _ => (Key { name: String::new(), at: item.at.clone() }, item),
        })
        .collect();
    Node { value: Value::Map(entries), at: n.at, tag: n.tag }
}

/// `build: ./dir` as `{context: ./dir}`.
fn build(n: Node) -> Node {
    match &n.value {
        Value::Scalar { .. } => {
            let at = n.at.clone();
            let key = Key { name: "context".into(), at: at.clone() };
            Node::new(Value::Map(vec![(key, n)]), at)
        }
        _ => n,
    }
}

/// Removes what is tagged `!reset` (an override of nothing, or a single file's), recursively.
pub(crate) fn strip_resets(n: &mut Node) {
    let mut stack = vec![n];
    while let Some(node) = stack.pop() {
        match &mut node.value {
            Value::Map(entries) => {
                entries.retain(|(_, v)| v.tag != Tag::Reset);
                stack.extend(entries.iter_mut().map(|(_, v)| v));
            }
            Value::Seq(items) => {
                items.retain(|v| v.tag != Tag::Reset);
                stack.extend(items.iter_mut());
            }
            _ => {}
        }
    }
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

    fn texts(n: &Node) -> Vec<&str> {
        match &n.value {
            Value::Seq(s) => s.iter().filter_map(Node::as_str).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn compose_merge_rules() {
        let a = parse(
            "services:\n  api:\n    image: a:1\n    command: [serve, --old]\n    environment: [A=1, B=2]\n    ports: ['8080', '80:80']\n    volumes: ['data:/var/lib', './x:/etc/x']\n    depends_on: [db]\n    dns: 8.8.8.8\n    cap_add: [NET_ADMIN]\n",
        );
        let b = parse(
            "services:\n  api:\n    image: a:2\n    command: [serve]\n    environment: {B: '3', C: '4'}\n    ports: ['8080', '9090', '80:80/tcp']\n    volumes: ['other:/var/lib']\n    depends_on: {cache: {condition: service_healthy}}\n    dns: [1.1.1.1, 8.8.8.8]\n    cap_add: [NET_ADMIN, SYS_TIME]\n",
        );
        let m = merge(a, b, &[]);
        let api = m.get("services").unwrap().get("api").unwrap();
        assert_eq!(api.get("image").unwrap().as_str(), Some("a:2"));
        assert_eq!(texts(api.get("command").unwrap()), ["serve"], "a command is replaced, not appended");
        let env = api.get("environment").unwrap();
        assert_eq!(env.get("A").unwrap().as_str(), Some("1"));
        assert_eq!(env.get("B").unwrap().as_str(), Some("3"));
        assert_eq!(env.get("C").unwrap().as_str(), Some("4"));
        assert_eq!(texts(api.get("ports").unwrap()), ["8080", "80:80/tcp", "9090"], "the same port once");
        assert_eq!(texts(api.get("volumes").unwrap()), ["other:/var/lib", "./x:/etc/x"], "merged by target");
        let deps = api.get("depends_on").unwrap();
        assert!(deps.get("db").is_some() && deps.get("cache").is_some());
        assert_eq!(texts(api.get("dns").unwrap()), ["8.8.8.8", "1.1.1.1"]);
        assert_eq!(texts(api.get("cap_add").unwrap()), ["NET_ADMIN", "SYS_TIME"]);
        assert_eq!(api.get("image").unwrap().at.line, 3, "a merged value is said where the last file set it");
    }

    #[test]
    fn reset_and_override() {
        let a =
            parse("services:\n  app:\n    image: a\n    ports: ['8080:80']\n    environment: {FOO: BAR, KEEP: x}\n");
        let b = parse(
            "services:\n  app:\n    ports: !reset []\n    environment:\n      FOO: !reset null\n    volumes: !override ['b:/b']\n",
        );
        let mut m = merge(a, b, &[]);
        strip_resets(&mut m);
        let app = m.get("services").unwrap().get("app").unwrap();
        assert!(app.get("ports").is_none());
        assert!(app.get("environment").unwrap().get("FOO").is_none());
        assert!(app.get("environment").unwrap().get("KEEP").is_some());
        let c = parse("services:\n  app:\n    ports: ['1:1']\n");
        let d = parse("services:\n  app:\n    ports: !override ['2:2']\n");
        let m = merge(c, d, &[]);
        assert_eq!(texts(m.get("services").unwrap().get("app").unwrap().get("ports").unwrap()), ["2:2"]);
    }

    #[test]
    fn many_keys_merge() {
        let n = 60_000;
        let mut a = String::from("services:\n  a:\n    environment:\n");
        let mut b = a.clone();
        for i in 0..n {
            a.push_str(&format!("      K{i}: v\n"));
            b.push_str(&format!("      K{i}: w\n"));
        }
        let m = merge(parse(&a), parse(&b), &[]);
        let env = m.get("services").unwrap().get("a").unwrap().get("environment").unwrap();
        assert_eq!(env.as_map().map(<[_]>::len), Some(n));
        assert_eq!(env.get("K59999").and_then(Node::as_str), Some("w"));
    }
}
