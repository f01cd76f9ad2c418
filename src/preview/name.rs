//! A preview's name, from the branch or pull request it shows: a DNS label (it is an environment
//! name and the first label of its host names), the same for the same source every time, and
//! distinct for distinct sources.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The longest name: room for `to-` before it (the edge's relay service) within a DNS label, and
/// for the project before it in container and volume names.
pub(crate) const MAX_NAME: usize = 40;

/// What a preview shows: a pull request, a branch, or a name chosen by the caller.
///
/// ```
/// use harbormaster::preview::PreviewName;
/// assert_eq!(PreviewName::pull_request(123).name(), "pr-123");
/// assert_eq!(PreviewName::branch("feature/Login-Page").name(), "feature-login-page");
/// assert_eq!(PreviewName::branch("1.2-hotfix").name(), "br-1-2-hotfix");
/// // Two branches that read the same once sanitised keep apart (see `Previews::up`).
/// assert_eq!(PreviewName::branch("feat/a").name(), PreviewName::branch("feat-a").name());
/// assert_ne!(PreviewName::branch("feat/a").source_digest(), PreviewName::branch("feat-a").source_digest());
/// ```
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PreviewName {
    name: String,
    source: String,
}

impl PreviewName {
    /// Pull (merge) request `number`: `pr-<number>`.
    pub fn pull_request(number: u64) -> PreviewName {
        PreviewName { name: format!("pr-{number}"), source: format!("pr:{number}") }
    }

    /// A branch, sanitised into a DNS label: lower case, every run of other characters one `-`,
    /// `br-` before a name that does not start with a letter, and a long one cut to 40
    /// characters with a digest of the whole branch at its end, so it stays distinct.
    pub fn branch(branch: &str) -> PreviewName {
        PreviewName { name: sanitise(branch, "br"), source: format!("branch:{branch}") }
    }

    /// A name chosen by the caller, sanitised as a branch's is.
    pub fn named(name: &str) -> PreviewName {
        PreviewName { name: sanitise(name, "preview"), source: format!("name:{name}") }
    }

    /// The name: the preview environment's, and the first label of its host names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A digest of what was named (the branch as given, the pull request's number): two sources
    /// that sanitise to the same name tell apart by it.
    pub fn source_digest(&self) -> String {
        crate::model::hex(&Sha256::digest(self.source.as_bytes()))[..12].to_string()
    }

    /// The same source under a name with the digest's first characters after it: the name used
    /// when another source has the plain one.
    pub(crate) fn disambiguated(&self) -> PreviewName {
        PreviewName { name: with_digest(&self.name, &self.source_digest()), source: self.source.clone() }
    }
}

impl fmt::Display for PreviewName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for PreviewName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreviewName({})", self.name)
    }
}

/// `text` as a DNS label of at most [`MAX_NAME`] characters (see [`PreviewName::branch`]).
fn sanitise(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out = out.trim_matches('-').to_string();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = if out.is_empty() { prefix.to_string() } else { format!("{prefix}-{out}") };
    }
    // Only a cut name needs the digest to stay distinct; a merely cleaned one stays readable
    // (two sources that clean to the same name are told apart when the second one comes up).
    if out.len() > MAX_NAME {
        out = with_digest(&out, &crate::model::hex(&Sha256::digest(text.as_bytes())));
    }
    out
}

/// `name` cut to leave room for `-` and six characters of `digest`, then those: within
/// [`MAX_NAME`], and told apart from another name with the same start.
fn with_digest(name: &str, digest: &str) -> String {
    let stem: String = name.chars().take(MAX_NAME.saturating_sub(7)).collect();
    format!("{}-{}", stem.trim_end_matches('-'), digest.get(..6).unwrap_or(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_for_any_input() {
        for input in [
            "",
            "-",
            "main",
            "Feature/LOGIN",
            "a".repeat(300).as_str(),
            "ünïcödé/ブランチ",
            "../../etc/passwd",
            "x\0y\n",
            "9",
            "--a--",
            "refs/heads/dependabot/cargo/serde-1.0.200",
        ] {
            let n = PreviewName::branch(input);
            crate::model::name::check("environment", n.name()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert!(n.name().len() <= MAX_NAME, "{input:?}");
            let d = n.disambiguated();
            crate::model::name::check("environment", d.name()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert!(d.name().len() <= MAX_NAME);
            assert_ne!(d.name(), n.name());
        }
    }

    #[test]
    fn names_are_stable_and_long_ones_stay_distinct() {
        assert_eq!(PreviewName::branch("Feature/X").name(), "feature-x");
        assert_eq!(PreviewName::branch("Feature/X"), PreviewName::branch("Feature/X"));
        let a = PreviewName::branch(&format!("{}a", "long-branch-".repeat(5)));
        let b = PreviewName::branch(&format!("{}b", "long-branch-".repeat(5)));
        assert_ne!(a.name(), b.name());
        assert_eq!(PreviewName::pull_request(7).name(), "pr-7");
        assert_eq!(PreviewName::branch("").name(), "br");
        assert_eq!(PreviewName::named("Demo 1").name(), "demo-1");
    }
}
