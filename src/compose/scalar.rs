//! What a YAML scalar means to Compose: booleans in every spelling Compose accepts, and the text
//! an unquoted number becomes where Compose wants a string (an `environment`, `labels` or `args`
//! value).
//!
//! Compose reads `PORT: 0755` as the number 493 and passes `PORT=493` to the container; both
//! implementations agree on integers (YAML's octal, hexadecimal and `_` separators). They disagree
//! on some floats (`1.0`: docker-compose 1.x passes `1.0`, Docker Compose v2 `1`) and on
//! sexagesimal numbers (`12:30` is 750 in YAML 1.1, text in YAML 1.2, the spec's YAML). The text
//! here is Docker Compose v2's (the Compose Specification's YAML 1.2); whenever it is not what
//! the file shows, the importer says so with a warning naming the key, and how to keep the text
//! (quote it).

/// A Compose boolean: `true`/`false`, `yes`/`no`, `on`/`off`, `y`/`n`, in any case (quoted or not,
/// as Compose casts them).
pub(crate) fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" => Some(true),
        "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// The text an unquoted scalar stands for where Compose wants a string, and, when that differs
/// from the text written, a note for a warning. `None` when it is plain text.
pub(crate) fn as_compose_text(text: &str) -> Option<(String, String)> {
    let v2 = yaml12(text)?;
    if v2 == text {
        return None;
    }
    let note = match yaml11(text) {
        Some(v1) if v1 == v2 => {
            format!("`{text}` is a YAML number: Compose passes {v2}; quote it to pass {text} as written")
        }
        Some(v1) if v1 != text => format!(
            "`{text}` is a YAML number: Docker Compose v2 passes {v2}, docker-compose 1.x {v1}; quote it to pass {text} as written"
        ),
        _ => format!(
            "`{text}` is a YAML number to Docker Compose v2, which passes {v2} (docker-compose 1.x passes it as written); quote it to pass {text}"
        ),
    };
    Some((v2, note))
}

/// How go-yaml v3 (Docker Compose v2) resolves a plain scalar that is not a string, printed as Go's
/// `fmt.Sprint` prints it.
fn yaml12(text: &str) -> Option<String> {
    match text {
        "true" | "True" | "TRUE" => return Some("true".into()),
        "false" | "False" | "FALSE" => return Some("false".into()),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some("+Inf".into()),
        "-.inf" | "-.Inf" | "-.INF" => return Some("-Inf".into()),
        ".nan" | ".NaN" | ".NAN" => return Some("NaN".into()),
        _ => {}
    }
    let first = text.chars().next()?;
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return None;
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(n) = go_parse_int(&plain) {
        return Some(n.to_string());
    }
    if yaml12_float(&plain) {
        let f: f64 = plain.parse().ok()?;
        return Some(go_float(f));
    }
    None
}

/// Go's `strconv.ParseInt(s, 0, 64)` (and `ParseUint` for what does not fit): a sign, then `0x`,
/// `0o`, `0b` or a leading `0` (octal), or decimal.
fn go_parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i128::from_str_radix(digits, radix).ok()?;
    // int64, or uint64 for a positive value beyond it.
    let n = if neg { -n } else { n };
    (n >= i128::from(i64::MIN) && n <= i128::from(u64::MAX)).then_some(n)
}

/// go-yaml v3's float pattern: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn yaml12_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// The shortest digits of `f` and its decimal exponent (`1.5e3` → `"15"`, 3).
fn digits(f: f64) -> (String, i32) {
    let e = format!("{:e}", f.abs());
    let (m, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    (m.replace('.', ""), exp.parse().unwrap_or(0))
}

/// `fmt.Sprint(f)` in Go: `%g` with the shortest digits, an exponent below 1e-4 or from 1e6
/// (`strconv.FormatFloat(f, 'g', -1, 64)`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let sign = if f.is_sign_negative() && f != 0.0 { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0");
    }
    let (d, exp) = digits(f);
    if !(-4..6).contains(&exp) {
        let rest = if d.len() > 1 { format!(".{}", &d[1..]) } else { String::new() };
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{}{rest}e{es}{:02}", &d[..1], exp.abs());
    }
    format!("{sign}{}", fixed(&d, exp))
}

/// Digits `d` with decimal exponent `exp` written out (`"15"`, 3 → `1500`; `"15"`, -1 → `0.15`).
fn fixed(d: &str, exp: i32) -> String {
    let point = exp + 1;
    if point <= 0 {
        format!("0.{}{d}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= d.len() {
        format!("{d}{}", "0".repeat(point as usize - d.len()))
    } else {
        format!("{}.{}", &d[..point as usize], &d[point as usize..])
    }
}

/// How PyYAML (YAML 1.1, docker-compose 1.x) resolves a plain scalar that is a number, printed as
/// Python's `str` prints it; `None` for text (and for booleans, which 1.x refuses in these places).
fn yaml11(text: &str) -> Option<String> {
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match plain.as_bytes().first()? {
        b'-' => (true, &plain[1..]),
        b'+' => (false, &plain[1..]),
        _ => (false, plain.as_str()),
    };
    let sign = if neg { "-" } else { "" };
    let int = |radix: u32, d: &str| -> Option<String> {
        (!d.is_empty() && d.chars().all(|c| c.is_digit(radix)))
            .then(|| i128::from_str_radix(d, radix).ok())
            .flatten()
            .map(|n| format!("{}", if neg { -n } else { n }))
    };
    if let Some(d) = body.strip_prefix("0b") {
        return int(2, d);
    }
    if let Some(d) = body.strip_prefix("0x") {
        return int(16, d);
    }
    if body.len() > 1 && body.starts_with('0') && body.chars().all(|c| c.is_digit(8)) {
        return int(8, &body[1..]);
    }
    if body == "0"
        || (body.starts_with(|c: char| c.is_ascii_digit() && c != '0') && body.chars().all(|c| c.is_ascii_digit()))
    {
        return int(10, body);
    }
    // Sexagesimal: 1:30 is 90.
    if body.contains(':') && !body.contains('.') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| c.is_ascii_digit() && c != '0') || !first.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut n: i128 = first.parse().ok()?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u32>().ok()? > 59 {
                return None;
            }
            n = n.checked_mul(60)?.checked_add(p.parse().ok()?)?;
        }
        return Some(format!("{sign}{n}"));
    }
    match body.to_ascii_lowercase().as_str() {
        ".inf" => return Some(format!("{sign}inf")),
        ".nan" if !neg && !text.starts_with('+') => return Some("nan".into()),
        _ => {}
    }
    // `[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?` or `\.[0-9_]+([eE][-+][0-9]+)?`.
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let ok_mantissa = all_digits(int_part) && all_digits(frac) && !(int_part.is_empty() && frac.is_empty());
    let ok_exponent = exponent.is_none_or(|e| e.len() > 1 && e.starts_with(['-', '+']) && all_digits(&e[1..]));
    if !ok_mantissa || !ok_exponent {
        return None;
    }
    let f: f64 = format!("{sign}{}{}", if int_part.is_empty() { "0" } else { int_part }, &mantissa[int_part.len()..])
        .parse::<f64>()
        .ok()
        .map(|m| m * 10f64.powi(exponent.and_then(|e| e.parse().ok()).unwrap_or(0)))?;
    Some(py_float(f))
}

/// Python's `repr(float)`: the shortest digits, with `.0` when whole, an exponent below 1e-4 or
/// from 1e16.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    let (d, exp) = digits(f);
    if !(-4..16).contains(&exp) {
        let rest = if d.len() > 1 { format!(".{}", &d[1..]) } else { String::new() };
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{}{rest}e{es}{:02}", &d[..1], exp.abs());
    }
    let text = fixed(&d, exp);
    if text.contains('.') {
        format!("{sign}{text}")
    } else {
        format!("{sign}{text}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_every_spelling() {
        for t in ["true", "True", "TRUE", "yes", "Yes", "on", "ON", "y"] {
            assert_eq!(boolean(t), Some(true), "{t}");
        }
        for t in ["false", "False", "no", "NO", "off", "n"] {
            assert_eq!(boolean(t), Some(false), "{t}");
        }
        assert_eq!(boolean("1"), None);
        assert_eq!(boolean("enabled"), None);
    }

    #[test]
    fn numbers_as_compose_passes_them() {
        let v2 = |t: &str| as_compose_text(t).map(|(v, _)| v);
        assert_eq!(v2("8080"), None, "as written");
        assert_eq!(v2("0755").as_deref(), Some("493"));
        assert_eq!(v2("0x1F").as_deref(), Some("31"));
        assert_eq!(v2("1_000").as_deref(), Some("1000"));
        assert_eq!(v2("1.10").as_deref(), Some("1.1"));
        assert_eq!(v2("1.0").as_deref(), Some("1"));
        assert_eq!(v2("0.5"), None);
        assert_eq!(v2(".5").as_deref(), Some("0.5"));
        assert_eq!(v2("1e3").as_deref(), Some("1000"));
        assert_eq!(v2("True").as_deref(), Some("true"));
        assert_eq!(v2("yes"), None, "text to YAML 1.2");
        assert_eq!(v2("12:30"), None, "text to YAML 1.2");
        assert_eq!(v2("1.2.3"), None);
        assert_eq!(v2("-"), None);
        assert_eq!(v2("+1"), Some("1".into()));
        assert_eq!(v2("1e21").as_deref(), Some("1e+21"));
        assert_eq!(v2("1000000.5").as_deref(), Some("1.0000005e+06"));
        assert_eq!(v2("123456.0").as_deref(), Some("123456"));
        assert_eq!(v2("0.00001").as_deref(), Some("1e-05"));
        // Where docker-compose 1.x agrees, the note says so; where not, it names both.
        assert!(as_compose_text("0755").unwrap().1.contains("Compose passes 493"));
        assert!(as_compose_text("1.0").unwrap().1.contains("docker-compose 1.x passes it as written"));
        assert!(as_compose_text("1e3").unwrap().1.contains("docker-compose 1.x passes it as written"));
        assert_eq!(yaml11("1.10").as_deref(), Some("1.1"));
        assert_eq!(yaml11("1.0").as_deref(), Some("1.0"));
        assert_eq!(yaml11("12:30").as_deref(), Some("750"));
        assert_eq!(yaml11("1.5e+3").as_deref(), Some("1500.0"));
        assert_eq!(yaml11("1e3"), None);
        assert_eq!(yaml11("0755").as_deref(), Some("493"));
    }
}
