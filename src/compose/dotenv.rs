//! The `.env` and `env_file` format, as the Compose Specification gives it (and Compose's own
//! parser reads it): `VAR=VAL` lines, `export` prefixes, `#` comment lines, `VAR: VAL` too;
//! unquoted values end at the line (an inline comment needs a space before its `#`) and are
//! interpolated; double-quoted values may span lines, take `\n`, `\r`, `\t`, `\\`, `\"`, `\$`
//! and octal escapes, and are interpolated; single-quoted values are literal but for `\'`. A
//! bare `VAR` takes the variable from the environment (left unset when it is not there).
//!
//! Variables in values are looked up in the environment first, then among the file's earlier
//! entries: `.env` holding `BASE=/srv` and `DATA=${BASE}/app` gives `DATA=/srv/app`.

use super::interpolate::{self, Interpolation};

/// One variable read, with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// What a file gave, and the variables it used that were unset (line, name).
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub entries: Vec<Entry>,
    pub unset: Vec<(usize, String)>,
}

/// Parses `text`; `lookup` is the environment (asked first for variables in values and for a
/// bare `VAR`). `raw`: values as written, without quotes removed or interpolation (compose's
/// `format: raw`). Errors name the line.
pub(crate) fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>, raw: bool) -> Result<Parsed, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Parsed::default();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut line = 1usize;
    let mut rest = text;
    loop {
        // The next statement: skip blank space and comment lines.
        let start = rest.trim_start_matches([' ', '\t', '\r', '\n', '\u{b}', '\u{c}']);
        line += rest[..rest.len() - start.len()].matches('\n').count();
        rest = start;
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
            continue;
        }
        let statement_line = line;
        if let Some(after) = rest.strip_prefix("export") {
            if after.starts_with([' ', '\t']) {
                rest = after.trim_start_matches([' ', '\t']);
            }
        }
        // The key: up to `=`, `:` or the end of the line.
        let end = rest.find(['=', ':', '\n']).unwrap_or(rest.len());
        let key = rest[..end].trim_end_matches([' ', '\t', '\r']);
        if key.is_empty() {
            return Err((statement_line, "a line starts with `=`: a variable name is missing".into()));
        }
        if let Some(c) = key.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']'))) {
            let reason = if c.is_whitespace() {
                format!("variable name {key:?} holds a space")
            } else {
                format!("character {c:?} is not allowed in variable name {key:?}")
            };
            return Err((statement_line, reason));
        }
        let key = key.to_string();
        let separator = rest[end..].chars().next();
        if separator.is_none() || separator == Some('\n') {
            // `VAR` alone: from the environment, if it is there.
            rest = &rest[end..];
            if let Some(v) = lookup(&key) {
                push(&mut out, &mut index, key, v, statement_line);
            }
            continue;
        }
        rest = rest[end + 1..].trim_start_matches([' ', '\t', '\r', '\u{b}', '\u{c}']);
        let earlier = |name: &str| lookup(name).or_else(|| index.get(name).map(|&i| out.entries[i].value.clone()));
        let (value, consumed, lines) = if raw {
            let end = rest.find('\n').unwrap_or(rest.len());
            (rest[..end].trim_end_matches([' ', '\t', '\r']).to_string(), end, 0)
        } else {
            value(rest, &earlier, &mut out.unset, statement_line)?
        };
        line += lines;
        rest = &rest[consumed..];
        push(&mut out, &mut index, key, value, statement_line);
    }
    Ok(out)
}

fn push(
    out: &mut Parsed,
    index: &mut std::collections::HashMap<String, usize>,
    key: String,
    value: String,
    line: usize,
) {
    match index.get(&key) {
        Some(&i) => out.entries[i] = Entry { key, value, line },
        None => {
            index.insert(key.clone(), out.entries.len());
            out.entries.push(Entry { key, value, line });
        }
    }
}

/// One value at the start of `src`: its text, the bytes it took and the newlines inside it.
fn value(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<(usize, String)>,
    line: usize,
) -> Result<(String, usize, usize), (usize, String)> {
    let interpolate = |text: &str, unset: &mut Vec<(usize, String)>| {
        let mut missing = Vec::new();
        let out = interpolate::interpolate(text, lookup, &mut missing).map_err(|e| match e {
            Interpolation::Error(reason) => (line, reason),
        })?;
        unset.extend(missing.into_iter().map(|n| (line, n)));
        Ok::<_, (usize, String)>(out)
    };
    let quote = match src.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => {
            let end = src.find('\n').unwrap_or(src.len());
            let mut v = &src[..end];
            if let Some(i) = v.find(" #").or_else(|| v.find("\t#")) {
                v = &v[..i];
            }
            let v = v.trim_end_matches([' ', '\t', '\r']);
            return Ok((interpolate(v, unset)?, end, 0));
        }
    };
    let mut chars = String::new();
    let mut escaped = false;
    for (i, c) in src.char_indices().skip(1) {
        if c != quote {
            if !escaped && c == '\\' {
                escaped = true;
                continue;
            }
            if escaped {
                escaped = false;
                chars.push('\\');
            }
            chars.push(c);
            continue;
        }
        if escaped {
            escaped = false;
            chars.push(c);
            continue;
        }
        let newlines = src[..i].matches('\n').count();
        let text = if quote == '"' { interpolate(&unescape(&chars), unset)? } else { chars };
        // What follows the closing quote on its line is a comment, or nothing.
        let after = &src[i + 1..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let tail = after[..line_end].trim();
        if !tail.is_empty() && !tail.starts_with('#') {
            return Err((line + newlines, format!("unexpected text {tail:?} after a quoted value")));
        }
        return Ok((text, i + 1 + line_end, newlines));
    }
    Err((line, format!("the value opens a {quote} it does not close")))
}

/// The escapes of a double-quoted value: `\n`, `\r`, `\t`, `\\`, `\"`, `\a`, `\b`, `\f`, `\v`,
/// `\0` + octal digits, and `\$` (a literal `$`, kept from interpolation as `$$`). Other
/// backslashes stay.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('$') => out.push_str("$$"),
            Some('0') => {
                chars.next();
                let mut n = 0u32;
                let mut digits = 0;
                while digits < 3 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            n = n * 8 + d;
                            digits += 1;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(n).unwrap_or('\0'));
                continue;
            }
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<(String, String)> {
        let env = |k: &str| match k {
            "FROM_ENV" => Some("from-env".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        parse(text, &env, false).unwrap().entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    fn one(text: &str) -> String {
        read(text).pop().map(|(_, v)| v).unwrap_or_default()
    }

    #[test]
    fn the_specifications_examples() {
        assert_eq!(one("VAR=VAL"), "VAL");
        assert_eq!(one("VAR=\"VAL\""), "VAL");
        assert_eq!(one("VAR='VAL'"), "VAL");
        assert_eq!(one("VAR=VAL # comment"), "VAL");
        assert_eq!(one("VAR=VAL# not a comment"), "VAL# not a comment");
        assert_eq!(one("VAR=\"VAL # not a comment\""), "VAL # not a comment");
        assert_eq!(one("VAR=\"VAL\" # comment"), "VAL");
        assert_eq!(one("VAR='$OTHER'"), "$OTHER");
        assert_eq!(one("VAR='${OTHER}'"), "${OTHER}");
        assert_eq!(one(r"VAR='Let\'s go!'"), "Let's go!");
        assert_eq!(one(r#"VAR="{\"hello\": \"json\"}""#), r#"{"hello": "json"}"#);
        assert_eq!(one(r#"VAR="some\tvalue""#), "some\tvalue");
        assert_eq!(one(r"VAR='some\tvalue'"), r"some\tvalue");
        assert_eq!(one(r"VAR=some\tvalue"), r"some\tvalue");
        assert_eq!(one("VAR="), "");
        assert_eq!(read("VAR"), Vec::<(String, String)>::new(), "unset when the environment lacks it");
        assert_eq!(one("FROM_ENV"), "from-env");
    }

    #[test]
    fn values_are_interpolated_from_the_environment_then_earlier_lines() {
        let got = read("BASE=/srv/data\nDATA_URL=${BASE}/app\nQ=\"$HOME/x\"\nS='$BASE'\nD=$${BASE}\nE=\"\\$BASE\"\n");
        assert_eq!(got[1], ("DATA_URL".into(), "/srv/data/app".into()));
        assert_eq!(got[2].1, "/home/u/x");
        assert_eq!(got[3].1, "$BASE");
        assert_eq!(got[4].1, "${BASE}");
        assert_eq!(got[5].1, "$BASE");
        let got = read("HOME=/elsewhere\nX=$HOME\n");
        assert_eq!(got[1].1, "/home/u", "the environment is asked first");
        let got = read("U=${PGUSER:-postgres}/psql\n");
        assert_eq!(got[0].1, "postgres/psql");
    }

    #[test]
    fn exports_comments_colons_multi_lines_and_errors() {
        let got = read("# c\n\nexport A=1\nB: 2\n  C = 3  \nM=\"l1\nl2\"\nN=after\n");
        let want = [("A", "1"), ("B", "2"), ("C", "3"), ("M", "l1\nl2"), ("N", "after")];
        assert_eq!(got, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>());
        let env = |_: &str| None;
        let err = |t: &str| parse(t, &env, false).unwrap_err();
        assert_eq!(err("A='open\n").0, 1);
        assert_eq!(err("ok=1\nbad key=2\n").0, 2);
        assert_eq!(err("ok=1\n=2\n").0, 2);
        assert!(err("A=${X:?needed}").1.contains("X must be set"));
        let raw = parse("A=\"quoted $X\"  \n", &env, true).unwrap();
        assert_eq!(raw.entries[0].value, "\"quoted $X\"");
        let lines = parse("A=1\n\nB=\"x\ny\"\nC=2\n", &env, false).unwrap();
        assert_eq!(lines.entries.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 3, 5]);
    }
}
