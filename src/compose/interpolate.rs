//! Variables in compose files: `$V`, `${V}`, `${V:-default}`, `${V-default}`, `${V:?error}`,
//! `${V?error}`, `${V:+alt}`, `${V+alt}` (defaults may hold variables themselves) and `$$` for a
//! dollar sign, as the Compose Specification's interpolation section gives them. The `.env` and
//! `env_file` format they also apply in is `dotenv.rs`.

use std::collections::BTreeMap;

/// Where variables come from, in order of precedence: given in code, the process environment,
/// the project's `.env`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Variables {
    pub given: BTreeMap<String, String>,
    pub process: BTreeMap<String, String>,
    pub dotenv: BTreeMap<String, String>,
}

impl Variables {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.given.get(name).or_else(|| self.process.get(name)).or_else(|| self.dotenv.get(name)).map(String::as_str)
    }

    /// A look-up of these variables.
    pub(crate) fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name| self.get(name).map(str::to_string)
    }
}

/// Where an expression's variables are looked up.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What interpolating one value found wrong, or noticed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Interpolation {
    /// `${V:?message}` with V unset (or empty), or a malformed expression.
    Error(String),
}

/// Substitutes the variables of `text`; `unset` collects names used without a value and without
/// a default (they become empty, as compose does, with a warning).
pub(crate) fn interpolate(text: &str, vars: Lookup<'_>, unset: &mut Vec<String>) -> Result<String, Interpolation> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    interpolate_depth(text, vars, unset, 0)
}

fn interpolate_depth(
    text: &str,
    vars: Lookup<'_>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, Interpolation> {
    if depth > 8 {
        return Err(Interpolation::Error("variables nested more than 8 deep in defaults".into()));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = closing_brace(inner)
                .ok_or_else(|| Interpolation::Error(format!("`${{` without its closing `}}` in {text:?}")))?;
            out.push_str(&expand(&inner[..end], vars, unset, depth)?);
            rest = &inner[end + 1..];
        } else {
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                // A lone `$` is kept, as compose does.
                out.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                match vars(name) {
                    Some(v) => out.push_str(&v),
                    None => unset.push(name.to_string()),
                }
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing an expression, nested `${…}` skipped.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn expand(expr: &str, vars: Lookup<'_>, unset: &mut Vec<String>, depth: usize) -> Result<String, Interpolation> {
    let len = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
    let (name, op) = expr.split_at(len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Interpolation::Error(format!("`${{{expr}}}` does not start with a variable name")));
    }
    let value = vars(name);
    let value = value.as_deref();
    let nonempty = value.filter(|v| !v.is_empty());
    let nested = |s: &str, unset: &mut Vec<String>| interpolate_depth(s, vars, unset, depth + 1);
    let result = match op {
        "" => match value {
            Some(v) => v.to_string(),
            None => {
                unset.push(name.to_string());
                String::new()
            }
        },
        _ if op.starts_with(":-") => match nonempty {
            Some(v) => v.to_string(),
            None => nested(&op[2..], unset)?,
        },
        _ if op.starts_with('-') => match value {
            Some(v) => v.to_string(),
            None => nested(&op[1..], unset)?,
        },
        _ if op.starts_with(":?") => match nonempty {
            Some(v) => v.to_string(),
            None => return Err(Interpolation::Error(required(name, &nested(&op[2..], unset)?, "set and not empty"))),
        },
        _ if op.starts_with('?') => match value {
            Some(v) => v.to_string(),
            None => return Err(Interpolation::Error(required(name, &nested(&op[1..], unset)?, "set"))),
        },
        _ if op.starts_with(":+") => match nonempty {
            Some(_) => nested(&op[2..], unset)?,
            None => String::new(),
        },
        _ if op.starts_with('+') => match value {
            Some(_) => nested(&op[1..], unset)?,
            None => String::new(),
        },
        _ => return Err(Interpolation::Error(format!("`${{{expr}}}` is not a substitution compose knows"))),
    };
    Ok(result)
}

fn required(name: &str, message: &str, how: &str) -> String {
    if message.is_empty() {
        format!("variable {name} must be {how}")
    } else {
        format!("variable {name} must be {how}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let mut v = Variables::default();
        v.process.insert("TAG".into(), "2.1".into());
        v.process.insert("EMPTY".into(), String::new());
        v.dotenv.insert("TAG".into(), "from-dotenv".into());
        v.dotenv.insert("DB".into(), "shop".into());
        v
    }

    fn run(text: &str) -> Result<String, Interpolation> {
        let v = vars();
        let out = interpolate(text, &v.lookup(), &mut Vec::new());
        out
    }

    #[test]
    fn every_form_compose_knows() {
        assert_eq!(run("api:${TAG}").unwrap(), "api:2.1", "the process wins over .env");
        assert_eq!(run("$DB-x").unwrap(), "shop-x");
        assert_eq!(run("${NOPE:-d}|${EMPTY:-d}|${NOPE-d}|${EMPTY-d}").unwrap(), "d|d|d|");
        assert_eq!(run("${NOPE:-${DB}}").unwrap(), "shop", "defaults hold variables");
        assert_eq!(run("${TAG:+set}|${NOPE:+set}|${EMPTY+set}").unwrap(), "set||set");
        assert_eq!(run("$$HOME costs $$5 and $").unwrap(), "$HOME costs $5 and $");
        assert_eq!(run("${TAG:?needed}").unwrap(), "2.1");
        assert_eq!(
            run("${EMPTY:?give a tag}"),
            Err(Interpolation::Error("variable EMPTY must be set and not empty: give a tag".into()))
        );
        assert!(run("${EMPTY?x}").is_ok());
        assert!(run("${NOPE?x}").is_err());
        assert!(run("${TAG").is_err());
        assert!(run("${1A}").is_err());
        assert!(run("${TAG/x/y}").is_err());
        let mut unset = Vec::new();
        let v = vars();
        assert_eq!(interpolate("a${NOPE}b$ALSO", &v.lookup(), &mut unset).unwrap(), "ab");
        assert_eq!(unset, vec!["NOPE".to_string(), "ALSO".to_string()]);
    }
}
