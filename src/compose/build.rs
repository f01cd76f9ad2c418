//! A service's `build`: a context path, or `context`, `dockerfile`, `dockerfile_inline`, `args`,
//! `target`, `network`, `extra_hosts`, `shm_size`, `labels`, `cache_from`, `no_cache`, `pull`
//! and `tags`, each a parameter of the engine's build API. What only BuildKit does (`ssh`,
//! `secrets`, `additional_contexts`, `cache_to`, several `platforms`, …) cannot be honoured.

use super::context::{Problem, R};
use super::draft::Svc;
use super::values;
use super::yaml::{Node, Value};
use crate::model::{Build, BuildOptions};

/// BuildKit-only keys and why each cannot be honoured.
const BUILDKIT: &[(&str, &str)] = &[
    ("ssh", "SSH agent forwarding into a build needs BuildKit; the engine's build API has no session"),
    ("secrets", "build secrets need BuildKit"),
    ("additional_contexts", "named build contexts need BuildKit"),
    ("cache_to", "cache export needs BuildKit"),
    ("entitlements", "build entitlements need BuildKit"),
    ("privileged", "privileged builds need BuildKit"),
    ("provenance", "provenance attestations need BuildKit"),
    ("sbom", "SBOM attestations need BuildKit"),
    ("ulimits", "build ulimits are not a parameter of the engine's build API"),
    ("isolation", "build isolation is a Windows engine's"),
];

/// Reads `build`.
pub(crate) fn read(s: &mut Svc<'_>, v: &Node, key: &str) -> R<Build> {
    if let Value::Scalar { text, .. } = &v.value {
        return Ok(Build::context(context(s, v, text, key)?));
    }
    let entries = values::mapping(v, key)?;
    let mut build = None;
    let mut dockerfile = None;
    let mut o = BuildOptions::default();
    let mut args = Vec::new();
    for (k, bv) in entries {
        let bkey = format!("{key}.{}", k.name);
        if matches!(bv.value, Value::Null) {
            continue;
        }
        match k.name.as_str() {
            "context" => build = Some(context(s, bv, &values::string(bv, &bkey)?, &bkey)?),
            "dockerfile" => dockerfile = Some(values::string(bv, &bkey)?),
            "dockerfile_inline" => o.dockerfile_inline = Some(values::string(bv, &bkey)?),
            "args" => {
                for e in values::entries(bv, &bkey, &['='])? {
                    let value = match values::entry_text(s.ctx, &e, &bkey)? {
                        Some(t) => Some(t),
                        // `ARG` alone: from the environment, left out when not set there.
                        None => s.ctx.vars.get(&e.key).map(str::to_string),
                    };
                    if let Some(value) = value {
                        args.push((e.key, value));
                    }
                }
            }
            "target" => o.target = Some(values::string(bv, &bkey)?),
            "network" => o.network = Some(values::string(bv, &bkey)?),
            "shm_size" => o.shm_size = Some(values::bytes(bv, &bkey)?),
            "no_cache" => o.no_cache = values::boolean(bv, &bkey)?,
            "pull" => o.pull = values::boolean(bv, &bkey)?,
            "cache_from" => o.cache_from = values::strings(bv, &bkey)?,
            "tags" => o.extra_tags = values::strings(bv, &bkey)?,
            "labels" => {
                for e in values::entries(bv, &bkey, &['='])? {
                    let value = values::entry_text(s.ctx, &e, &bkey)?.unwrap_or_default();
                    o.labels.insert(e.key, value);
                }
            }
            "extra_hosts" => {
                for e in values::entries(bv, &bkey, &['=', ':'])? {
                    let address = values::entry_text(s.ctx, &e, &bkey)?.unwrap_or_default();
                    o.extra_hosts.push((e.key, unbracket(&address)));
                }
            }
            "platforms" => {
                let platforms = values::strings(bv, &bkey)?;
                if platforms.len() > 1 {
                    s.ctx.cannot(
                        &k.at,
                        &bkey,
                        "a build for several platforms needs BuildKit; the engine builds for its own",
                    )?;
                } else {
                    s.ctx.warn(&k.at, &bkey, "the image is built for the engine's own platform");
                }
            }
            x if x.starts_with("x-") => {}
            x => match BUILDKIT.iter().find(|(b, _)| *b == x) {
                Some((_, why)) => s.ctx.cannot(&k.at, &bkey, why)?,
                None => return Err(Problem::new(&k.at, bkey, format!("`{x}` is not a key of a compose build"))),
            },
        }
    }
    let mut build = match build {
        Some(dir) => Build::context(dir),
        None => Build::context(s.ctx.path(&v.at, ".")),
    };
    if let Some(d) = dockerfile {
        if o.dockerfile_inline.is_some() {
            return Err(Problem::new(&v.at, key, "`dockerfile` and `dockerfile_inline` cannot be given together"));
        }
        build = build.dockerfile(d);
    }
    for (k, v) in args {
        build = build.arg(k, v);
    }
    Ok(build.options(o))
}

/// A build context: a directory (relative to the project), not a URL.
fn context(s: &mut Svc<'_>, v: &Node, text: &str, key: &str) -> R<std::path::PathBuf> {
    let remote = ["http://", "https://", "git://", "git@", "ssh://", "github.com/"].iter().any(|p| text.starts_with(p));
    if remote {
        s.ctx.cannot(
            &v.at,
            key,
            "a remote build context (a Git or HTTP URL) is not fetched: build from a directory",
        )?;
    }
    Ok(s.ctx.path(&v.at, text))
}

/// `[::1]` as `::1`.
pub(crate) fn unbracket(address: &str) -> String {
    address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address).to_string()
}
