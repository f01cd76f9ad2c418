//! Where secret values are scrubbed: every text that comes back from a target (engine messages,
//! log lines, command output, SSH diagnostics) passes through `scrub::text` before the library stores
//! or shows it, and every error and event it hands out is scrubbed again on the way out
//! (see [`Error`](crate::Error)).
//!
//! The values to scrub are those of every [`Secret`](crate::Secret) this process has made (inline,
//! from env, from a file), and those found in the environment of the containers it inspected (a
//! rotated secret's previous value). They are kept in this process only, never written anywhere.
//! A value is replaced by `[redacted]` as written, and as JSON or Rust string escaping renders it.
//!
//! Values shorter than [`MIN_LEN`] characters are not scrubbed from free text: they would match
//! ordinary words and numbers everywhere. A secret that short is not a secret; the library warns
//! when one is made.

use std::borrow::Cow;
use std::sync::RwLock;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// The shortest value scrubbed from free text.
pub const MIN_LEN: usize = 4;

/// The forms to look for, longest first (so a value containing another is replaced whole).
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a secret value: from now on it is scrubbed from every text.
pub(crate) fn remember(value: &str) {
    if value.chars().count() < MIN_LEN {
        if !value.is_empty() {
            tracing::warn!(
                length = value.chars().count(),
                "a secret value shorter than {MIN_LEN} characters cannot be scrubbed from engine messages and logs"
            );
        }
        return;
    }
    let mut forms = vec![value.to_string()];
    // As JSON and Rust's `{:?}` escape it (quotes, backslashes, control characters).
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json.trim_matches('"').to_string());
    }
    forms.push(format!("{value:?}").trim_matches('"').to_string());
    // A value spanning lines shows line by line in logs.
    forms.extend(value.lines().filter(|l| l.trim().len() >= 4).map(str::to_string));
    let Ok(mut known) = KNOWN.write() else { return };
    let mut changed = false;
    for f in forms {
        if f.chars().count() >= MIN_LEN && !known.contains(&f) {
            known.push(f);
            changed = true;
        }
    }
    if changed {
        known.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }
}

/// `s` with every known secret value replaced by [`REDACTED`].
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    let Ok(known) = KNOWN.read() else { return Cow::Owned(REDACTED.to_string()) };
    if !known.iter().any(|k| s.contains(k.as_str())) {
        return Cow::Borrowed(s);
    }
    let mut out = s.to_string();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), REDACTED);
        }
    }
    Cow::Owned(out)
}

/// Scrubs a string in place.
pub(crate) fn in_place(s: &mut String) {
    if let Cow::Owned(clean) = text(s) {
        *s = clean;
    }
}

/// Scrubs every string of a list in place.
pub(crate) fn all(v: &mut [String]) {
    v.iter_mut().for_each(in_place);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_their_escaped_forms_are_replaced() {
        remember("s3cr3t-\"quoted\"-v4lue");
        let raw = "error: KEY=s3cr3t-\"quoted\"-v4lue is bad";
        assert_eq!(text(raw), format!("error: KEY={REDACTED} is bad"));
        let json = r#"{"Env":["KEY=s3cr3t-\"quoted\"-v4lue"]}"#;
        assert!(!text(json).contains("s3cr3t"), "{}", text(json));
        assert!(matches!(text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_longer_value_containing_a_shorter_one_is_replaced_whole() {
        remember("abcdefgh-inner");
        remember("outer-abcdefgh-inner-outer");
        assert_eq!(text("x outer-abcdefgh-inner-outer y"), format!("x {REDACTED} y"));
    }

    #[test]
    fn multi_line_values_are_scrubbed_line_by_line() {
        remember("-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG\n-----END KEY-----");
        assert!(!text("log: MIIEvQIBADANBgkqhkiG").contains("MIIE"));
    }
}
