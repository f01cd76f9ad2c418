//! Typed reads of compose values, each failing with the key and what was expected: strings,
//! lists, booleans in Compose's spellings, numbers, durations (`1m30s`), byte sizes (`512m`),
//! mappings that may be written as `KEY=VALUE` lists, and checks that a long-form mapping holds
//! only the keys it may.

use std::time::Duration;

use super::context::{Context, Problem, R};
use super::scalar;
use super::yaml::{Key, Node, Value};

/// A scalar's text.
pub(crate) fn string(v: &Node, key: &str) -> R<String> {
    v.as_str().map(str::to_string).ok_or_else(|| Problem::new(&v.at, key, format!("a string, not {}", v.kind())))
}

/// A list's items.
pub(crate) fn list<'n>(v: &'n Node, key: &str) -> R<&'n [Node]> {
    match &v.value {
        Value::Seq(items) => Ok(items),
        _ => Err(Problem::new(&v.at, key, format!("a list, not {}", v.kind()))),
    }
}

/// A list of strings, or one string as a list of one (`dns: 8.8.8.8`).
pub(crate) fn strings(v: &Node, key: &str) -> R<Vec<String>> {
    match &v.value {
        Value::Scalar { text, .. } => Ok(vec![text.clone()]),
        Value::Seq(items) => items.iter().enumerate().map(|(i, item)| string(item, &format!("{key}[{i}]"))).collect(),
        Value::Null => Ok(Vec::new()),
        Value::Map(_) => Err(Problem::new(&v.at, key, "a string or a list of strings, not a mapping")),
    }
}

/// A boolean, in any spelling Compose takes (`true`, `yes`, `on`, `y`, any case).
pub(crate) fn boolean(v: &Node, key: &str) -> R<bool> {
    v.as_str()
        .and_then(scalar::boolean)
        .ok_or_else(|| Problem::new(&v.at, key, format!("true or false, not {}", shown(v))))
}

/// A whole number of 0 or more.
pub(crate) fn count(v: &Node, key: &str) -> R<u32> {
    let text = string(v, key)?;
    text.trim().parse().map_err(|_| Problem::new(&v.at, key, format!("a whole number of 0 or more, not {text:?}")))
}

/// A whole number (negative allowed).
pub(crate) fn integer(v: &Node, key: &str) -> R<i64> {
    let text = string(v, key)?;
    let t: String = text.trim().chars().filter(|c| *c != '_').collect();
    t.parse().map_err(|_| Problem::new(&v.at, key, format!("a whole number, not {text:?}")))
}

/// A number of 0 or more.
pub(crate) fn float(v: &Node, key: &str) -> R<f64> {
    let text = string(v, key)?;
    let f: f64 = text.trim().parse().map_err(|_| Problem::new(&v.at, key, format!("a number, not {text:?}")))?;
    if f.is_finite() && f >= 0.0 {
        Ok(f)
    } else {
        Err(Problem::new(&v.at, key, "a number of 0 or more"))
    }
}

/// A duration value.
pub(crate) fn duration(v: &Node, key: &str) -> R<Duration> {
    let text = string(v, key)?;
    crate::duration::parse(&text)
        .ok_or_else(|| Problem::new(&v.at, key, format!("a duration such as 30s, 1m30s or 500ms, not {text:?}")))
}

/// A byte size as Compose reads one: a number of bytes, or with a unit `k`, `m`, `g`, `t`, `p`
/// (powers of 1024, any case, with an optional `b` or `ib`: `512m`, `1GB`, `2MiB`).
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let n_len = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let n: f64 = t[..n_len].parse().ok()?;
    let unit = t[n_len..].trim();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = if unit.len() == 2 { unit.strip_suffix('i').unwrap_or(unit) } else { unit };
    let k = 1024.0f64;
    let unit = match unit {
        "" => 1.0,
        "k" => k,
        "m" => k * k,
        "g" => k * k * k,
        "t" => k * k * k * k,
        "p" => k * k * k * k * k,
        _ => return None,
    };
    let bytes = (n * unit).floor();
    (bytes.is_finite() && (0.0..9.0e18).contains(&bytes)).then_some(bytes as u64)
}

/// A byte size value.
pub(crate) fn bytes(v: &Node, key: &str) -> R<u64> {
    let text = string(v, key)?;
    parse_bytes(&text).ok_or_else(|| Problem::new(&v.at, key, format!("a size such as 512m or 1g, not {text:?}")))
}

/// What a node looks like in a message.
pub(crate) fn shown(v: &Node) -> String {
    match &v.value {
        Value::Scalar { text, .. } => format!("{:?}", text.chars().take(40).collect::<String>()),
        _ => v.kind().to_string(),
    }
}

/// An entry of a mapping that may be written as a list of `KEY=VALUE` (or `KEY`) items: its key,
/// where it was written, and its value (`None`: no value given).
pub(crate) struct Entry<'n> {
    pub key: String,
    pub at: super::yaml::At,
    pub value: Option<&'n Node>,
    /// The value's text when it came from a `KEY=VALUE` item.
    pub text: Option<String>,
}

/// A mapping, or its list form (`[A=1, B]`), as entries in order. `sep` is `=` (or `:` too, for
/// `extra_hosts`).
pub(crate) fn entries<'n>(v: &'n Node, key: &str, seps: &[char]) -> R<Vec<Entry<'n>>> {
    match &v.value {
        Value::Map(m) => Ok(m
            .iter()
            .map(|(k, val)| Entry {
                key: k.name.clone(),
                at: k.at.clone(),
                value: (!matches!(val.value, Value::Null)).then_some(val),
                text: None,
            })
            .collect()),
        Value::Seq(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let text = string(item, &format!("{key}[{i}]"))?;
                let (k, value) = match text.find(seps) {
                    Some(at) => (text[..at].to_string(), Some(text[at + 1..].to_string())),
                    None => (text.clone(), None),
                };
                out.push(Entry { key: k, at: item.at.clone(), value: None, text: value });
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        Value::Scalar { .. } => Err(Problem::new(&v.at, key, "a mapping or a list of KEY=VALUE")),
    }
}

/// The value of an entry as text, as Compose passes it: a `KEY=VALUE` item's text, a mapping
/// value's text (an unquoted number as Compose prints it, with a warning when that is not what is
/// written), or `None` when no value is given.
pub(crate) fn entry_text(ctx: &mut Context, e: &Entry<'_>, key: &str) -> R<Option<String>> {
    if let Some(t) = &e.text {
        return Ok(Some(t.clone()));
    }
    let Some(v) = e.value else { return Ok(None) };
    match &v.value {
        Value::Scalar { text, plain: true } => match scalar::as_compose_text(text) {
            Some((compose, note)) => {
                ctx.warn(&v.at, &format!("{key}.{}", e.key), &note);
                Ok(Some(compose))
            }
            None => Ok(Some(text.clone())),
        },
        Value::Scalar { text, .. } => Ok(Some(text.clone())),
        _ => Err(Problem::new(&v.at, format!("{key}.{}", e.key), "a value is a string, number or boolean")),
    }
}

/// Refuses keys of a long-form mapping other than `allowed` (and `x-*` extensions), as Compose
/// does: a misspelt key is never ignored.
pub(crate) fn only(v: &Node, key: &str, allowed: &[&str]) -> R<()> {
    for (k, _) in v.as_map().unwrap_or_default() {
        if !allowed.contains(&k.name.as_str()) && !k.name.starts_with("x-") {
            return Err(Problem::new(
                &k.at,
                format!("{key}.{}", k.name),
                format!("`{}` is not a key of `{}` (it takes {})", k.name, last(key), allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// A mapping's entries, refusing anything else.
pub(crate) fn mapping<'n>(v: &'n Node, key: &str) -> R<&'n [(Key, Node)]> {
    match &v.value {
        Value::Map(m) => Ok(m),
        Value::Null => Ok(&[]),
        _ => Err(Problem::new(&v.at, key, format!("a mapping, not {}", v.kind()))),
    }
}

/// The last part of a key path, for messages.
fn last(key: &str) -> &str {
    let k = key.rsplit('.').next().unwrap_or(key);
    k.split('[').next().unwrap_or(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(crate::duration::parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(crate::duration::parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(crate::duration::parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(crate::duration::parse("10"), Some(Duration::from_secs(10)));
        assert_eq!(crate::duration::parse("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(crate::duration::parse("1h5m30s20ms"), Some(Duration::from_millis(3_930_020)));
        for bad in ["", "s", "1x", "1e400s", "-1s", "99999999999999999999h"] {
            assert_eq!(crate::duration::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5G"), Some(3 << 29));
        assert_eq!(parse_bytes("2gb"), Some(2 << 30));
        assert_eq!(parse_bytes("100k"), Some(102_400));
        assert_eq!(parse_bytes("100000k"), Some(102_400_000));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("2MiB"), Some(2 << 20));
        assert_eq!(parse_bytes("64 MB"), Some(64 << 20));
        assert_eq!(parse_bytes("1x"), None);
        assert_eq!(parse_bytes("1bb"), None);
        assert_eq!(parse_bytes("-5g"), None);
    }
}
