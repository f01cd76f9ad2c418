//! A build context as the Docker CLI sends it: the directory's files minus what `.dockerignore`
//! excludes (moby's pattern rules: `*`, `?`, `[…]`, `**`, `!` exceptions, the last match wins, a
//! pattern matching a directory excludes what is under it; the Dockerfile and `.dockerignore`
//! are always sent), packed as a tar archive.
//!
//! Its fingerprint (every file's path, size, modification time and mode, with the Dockerfile,
//! arguments and tag) decides whether a build can be skipped: an unchanged context is not sent to
//! the engine again (see `images.rs`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One `.dockerignore` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    /// Path components of the cleaned pattern.
    parts: Vec<String>,
    /// `!pattern`: an exception.
    exception: bool,
}

/// The patterns of a `.dockerignore`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses a `.dockerignore`'s text.
    pub(crate) fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let parts = clean(body);
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts, exception });
        }
        Ignore { patterns }
    }

    /// Whether `path` (relative, `/`-separated) is excluded: the last pattern matching it, or one of
    /// its parent directories, decides.
    pub(crate) fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut excluded = false;
        for p in &self.patterns {
            let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether an exception could bring back something under the excluded directory `dir`, so
    /// the walk must still enter it.
    fn may_reinclude_under(&self, dir: &str) -> bool {
        self.patterns.iter().any(|p| p.exception) && {
            let depth = dir.split('/').filter(|p| !p.is_empty()).count();
            self.patterns.iter().filter(|p| p.exception).any(|p| {
                p.parts.iter().any(|c| c == "**")
                    || p.parts.len() > depth
                    || p.parts.iter().any(|c| c.contains(['*', '?', '[']))
            })
        }
    }
}

/// A pattern cleaned as Go's `filepath.Clean` would, split into components, without a leading `/`.
fn clean(pattern: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in pattern.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Whether pattern components match path components exactly (`**` spans any number of them).
fn match_parts(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| match_parts(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => glob(first.as_bytes(), p.as_bytes()) && match_parts(rest, prest),
            None => false,
        },
    }
}

/// Go's `filepath.Match` on one component: `*`, `?`, `[…]` (with `^` or `!` negation and ranges),
/// `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some((&c, rest)) = s.split_first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'^') | Some(b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while let Some(&b) = p.get(i) {
                if b == b']' && !first {
                    break;
                }
                first = false;
                let lo = if b == b'\\' {
                    i += 1;
                    p.get(i).copied().unwrap_or(b'\\')
                } else {
                    b
                };
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
                    let hi = p[i + 2];
                    matched |= lo <= c && c <= hi;
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if p.get(i) != Some(&b']') {
                return false; // an unclosed class matches nothing, as Go reports ErrBadPattern
            }
            matched != negate && glob(&p[i + 1..], rest)
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&b) => s.first() == Some(&b) && glob(&p[1..], &s[1..]),
    }
}

/// One file of the context.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Relative, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub meta: std::fs::Metadata,
}

/// The files of `dir` that are sent (`.dockerignore` applied; `keep` always sent), sorted.
pub(crate) fn walk(dir: &Path, keep: &[&str]) -> std::io::Result<Vec<Entry>> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs_dir, rel_dir)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&abs_dir)?.collect::<Result<Vec<_>, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() { name } else { format!("{rel_dir}/{name}") };
            let meta = std::fs::metadata(e.path()).or_else(|_| e.metadata())?;
            let excluded = ignore.excludes(&rel) && !keep.contains(&rel.as_str());
            if meta.is_dir() {
                if !excluded || ignore.may_reinclude_under(&rel) {
                    if !excluded {
                        out.push(Entry { rel: rel.clone(), abs: e.path(), meta });
                    }
                    stack.push((e.path(), rel));
                }
            } else if !excluded {
                out.push(Entry { rel, abs: e.path(), meta });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The fingerprint of a context's files and how they are built.
pub(crate) fn fingerprint(entries: &[Entry], salt: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    for e in entries {
        h.update(e.rel.as_bytes());
        h.update([0]);
        h.update(e.meta.len().to_le_bytes());
        h.update(e.meta.mtime().to_le_bytes());
        h.update(e.meta.mtime_nsec().to_le_bytes());
        h.update(e.meta.mode().to_le_bytes());
        h.update(e.meta.ino().to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The entries as a tar archive (symbolic links followed, as the files they point to), with an
/// extra file `(name, text)` if given (an inline Dockerfile).
pub(crate) fn pack(entries: &[Entry], extra: Option<(&str, &str)>) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    archive.follow_symlinks(true);
    if let Some((name, text)) = extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, name, text.as_bytes())?;
    }
    for e in entries {
        if e.meta.is_dir() {
            archive.append_dir(&e.rel, &e.abs)?;
        } else {
            archive.append_path_with_name(&e.abs, &e.rel)?;
        }
    }
    archive.into_inner()
}

#[cfg(test)]
mod tests {
    use super::Ignore;

    #[test]
    fn dockerignore_rules_as_moby_applies_them() {
        let i = Ignore::parse(
            "# comment\n\ntarget\n*.log\n/docs/**/*.md\n!docs/keep.md\n**/node_modules\nsecret?.txt\n[ab].bin\n!important.log\n",
        );
        for (path, excluded) in [
            ("target", true),
            ("target/debug/app", true),
            ("src/main.rs", false),
            ("app.log", true),
            ("important.log", false),
            ("logs/app.log", false), // `*` does not cross `/`
            ("docs/a/b/readme.md", true),
            ("docs/readme.md", true),
            ("docs/keep.md", false),
            ("docs/readme.txt", false),
            ("web/node_modules/x/index.js", true),
            ("node_modules/y", true),
            ("secret1.txt", true),
            ("secret12.txt", false),
            ("a.bin", true),
            ("c.bin", false),
        ] {
            assert_eq!(i.excludes(path), excluded, "{path}");
        }
    }

    #[test]
    fn exceptions_and_order() {
        let i = Ignore::parse("*\n!src\n!Dockerfile\nsrc/generated\n");
        assert!(i.excludes("README.md"));
        assert!(!i.excludes("src/lib.rs"));
        assert!(i.excludes("src/generated/x.rs"));
        assert!(!i.excludes("Dockerfile"));
        assert!(!i.may_reinclude_under("anything"), "`!src` brings back nothing under another directory");
        assert!(Ignore::parse("docs\n!docs/keep.md\n").may_reinclude_under("docs"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(super::glob(b"[!a]x", b"bx"));
        assert!(!super::glob(b"[!a]x", b"ax"));
        assert!(super::glob(b"[a-c]", b"b"));
        assert!(super::glob(b"\\*", b"*"));
        assert!(!super::glob(b"\\*", b"a"));
        assert!(!super::glob(b"[ab", b"a"));
    }
}
