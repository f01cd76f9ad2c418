//! What a whole import shares: the variables, the warnings, whether what cannot be honoured is an
//! error or a warning, the files read (each once) and the directory each file's relative paths
//! are resolved from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::interpolate::{self, Variables};
use super::yaml::{self, At, Node, Value};
use super::ComposeWarning;
use crate::error::ValidationError;

/// Something wrong at a place in a compose file.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    pub at: At,
    pub key: String,
    pub reason: String,
}

/// The result of a step of the import.
pub(crate) type R<T> = std::result::Result<T, Problem>;

impl Problem {
    pub(crate) fn new(at: &At, key: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem { at: at.clone(), key: key.into(), reason: reason.into() }
    }

    pub(crate) fn into_error(self) -> ValidationError {
        ValidationError::Compose {
            file: self.at.file.to_string(),
            line: self.at.line,
            key: self.key,
            reason: self.reason,
        }
    }
}

/// The import's shared state.
pub(crate) struct Context {
    pub vars: Variables,
    pub warnings: Vec<ComposeWarning>,
    pub lenient: bool,
    /// Files read and interpolated, by path.
    loaded: BTreeMap<PathBuf, Node>,
    /// The directory relative paths of each file are resolved from: the project directory for
    /// the files given (as `docker compose -f a -f b` does), a file's own for `extends` and
    /// `include`.
    dirs: HashMap<Arc<str>, PathBuf>,
}

impl Context {
    pub(crate) fn new(vars: Variables, lenient: bool) -> Context {
        Context { vars, warnings: Vec::new(), lenient, loaded: BTreeMap::new(), dirs: HashMap::new() }
    }

    /// Reads, parses and interpolates one file (once); its relative paths resolve from `dir`
    /// (the file's own directory if `None`).
    pub(crate) fn load(&mut self, path: &Path, dir: Option<&Path>) -> R<Node> {
        if let Some(n) = self.loaded.get(path) {
            return Ok(n.clone());
        }
        let name: Arc<str> = Arc::from(path.display().to_string());
        let at = At { file: name.clone(), line: 0 };
        let bytes = std::fs::read(path).map_err(|e| Problem::new(&at, "", format!("cannot read it: {e}")))?;
        if bytes.len() > yaml::MAX_FILE_BYTES {
            return Err(Problem::new(&at, "", format!("is larger than {} bytes", yaml::MAX_FILE_BYTES)));
        }
        let text = String::from_utf8(bytes).map_err(|_| Problem::new(&at, "", "is not UTF-8 text"))?;
        let mut doc = yaml::parse(&text, &name)?;
        if !matches!(doc.value, Value::Map(_)) {
            return Err(Problem::new(&doc.at, "", format!("a compose file is a mapping, not {}", doc.kind())));
        }
        let own = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = dir.map(Path::to_path_buf).unwrap_or(own);
        self.dirs.insert(name, std::path::absolute(&base).unwrap_or(base));
        self.interpolate(&mut doc)?;
        self.loaded.insert(path.to_path_buf(), doc.clone());
        Ok(doc)
    }

    /// Interpolates every scalar value (keys are not), iteratively.
    pub(crate) fn interpolate(&mut self, root: &mut Node) -> R<()> {
        let lookup = self.vars.lookup();
        let mut warnings = Vec::new();
        let mut stack: Vec<(&mut Node, String)> = vec![(root, String::new())];
        while let Some((node, path)) = stack.pop() {
            let Node { value, at, .. } = node;
            match value {
                Value::Scalar { text, .. } => {
                    if !text.contains('$') {
                        continue;
                    }
                    let mut unset = Vec::new();
                    let out = interpolate::interpolate(text, &lookup, &mut unset).map_err(|e| match e {
                        interpolate::Interpolation::Error(reason) => Problem::new(at, path.clone(), reason),
                    })?;
                    for name in unset {
                        warnings.push(ComposeWarning {
                            file: at.file.to_string(),
                            line: at.line,
                            key: path.clone(),
                            message: format!("variable {name} is not set: it is read as an empty string"),
                        });
                    }
                    *text = out;
                }
                Value::Seq(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        stack.push((item, format!("{path}[{i}]")));
                    }
                }
                Value::Map(entries) => {
                    for (k, v) in entries.iter_mut() {
                        let p = if path.is_empty() { k.name.clone() } else { format!("{path}.{}", k.name) };
                        stack.push((v, p));
                    }
                }
                Value::Null => {}
            }
        }
        self.warnings.extend(warnings);
        Ok(())
    }

    /// A key that cannot be honoured: an error, or a warning when lenient.
    pub(crate) fn cannot(&mut self, at: &At, key: &str, why: &str) -> R<()> {
        if self.lenient {
            self.warn(at, key, &format!("not applied: {why}"));
            Ok(())
        } else {
            Err(Problem::new(at, key, format!("{why} (Compose::lenient() makes this a warning)")))
        }
    }

    /// A warning.
    pub(crate) fn warn(&mut self, at: &At, key: &str, message: &str) {
        self.warnings.push(ComposeWarning {
            file: at.file.to_string(),
            line: at.line,
            key: key.to_string(),
            message: message.to_string(),
        });
    }

    /// The directory a file's relative paths resolve from.
    pub(crate) fn dir_of(&self, at: &At) -> PathBuf {
        if let Some(d) = self.dirs.get(&at.file) {
            return d.clone();
        }
        let dir = Path::new(&*at.file).parent().map(Path::to_path_buf).unwrap_or_default();
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// A path written at `at`, made absolute: relative ones from the file's directory (see
    /// [`dir_of`](Self::dir_of)), `~` as the home directory.
    pub(crate) fn path(&self, at: &At, written: &str) -> PathBuf {
        if written == "~" || written.starts_with("~/") {
            if let Some(home) = std::env::var_os("HOME") {
                return PathBuf::from(home).join(written.trim_start_matches('~').trim_start_matches('/'));
            }
        }
        let p = Path::new(written);
        if p.is_absolute() {
            return clean(p);
        }
        clean(&self.dir_of(at).join(p))
    }
}

/// `a/./b/../c` as `a/c`, lexically (as compose does; no symbolic link is followed).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
