//! A service's mounts: `volumes` (short `[source:]target[:mode]` and long form), `tmpfs`, and
//! file `secrets` and `configs`.
//!
//! | compose | mount |
//! |---|---|
//! | `./dir:/x`, `/abs:/x`, `~/dir:/x` | a bind mount, relative to the project directory; a missing source is created as a directory, as Compose does for the short form |
//! | `name:/x` | the environment's named volume `name` (declared at the top level), or an external one |
//! | `/x` alone, or a long-form volume without `source` | a named volume of the service (kept across replacements, as Compose keeps an anonymous volume) |
//! | modes `ro`, `rw`, `z`, `Z`, `nocopy`, propagation (`rshared`, …), `cached`/`delegated`/`consistent` | read-only, SELinux relabelling, no copy, propagation; the last three change nothing on Linux |
//! | long form `bind.propagation`, `bind.create_host_path`, `bind.selinux`, `volume.nocopy`, `tmpfs.size`, `tmpfs.mode` | the same options |
//! | `tmpfs: /run:size=64m,mode=1777,noexec` | a tmpfs mount with its options |
//! | `secrets`, `configs` from a top-level `file` | read-only bind mounts at `/run/secrets/<name>` and `/<name>` (or `target`) |

use super::context::{Problem, R};
use super::declared::VolumeDecl;
use super::draft::Svc;
use super::values;
use super::yaml::{Node, Value};
use crate::model::{ContainerFile, Propagation, Relabel, Volume};

/// Mount modes that change nothing on Linux (Docker Desktop's file sharing).
const NO_OP_MODES: &[&str] = &["cached", "delegated", "consistent"];

/// `volumes`.
pub(crate) fn volumes(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        let vol = match &item.value {
            Value::Scalar { text, .. } => short(s, item, text, &ikey)?,
            Value::Map(_) => long(s, item, &ikey)?,
            _ => return Err(Problem::new(&item.at, ikey, "a volume is a string or a mapping")),
        };
        add(s, vol, item, &ikey)?;
    }
    Ok(())
}

/// Adds a mount; a later one with the same target replaces the earlier (as merged files do).
/// The target is cleaned as Compose cleans it (`/etc/x/` and `/etc/./x` are `/etc/x`).
fn add(s: &mut Svc<'_>, mut vol: Volume, item: &Node, key: &str) -> R<()> {
    if !vol.target.starts_with('/') {
        return Err(Problem::new(&item.at, key, format!("the container path {:?} must be absolute", vol.target)));
    }
    vol.target = clean_target(&vol.target);
    s.d.volumes.retain(|v| v.target != vol.target);
    s.d.volumes.push(vol);
    Ok(())
}

/// A container path without `.`, `..`, repeated or trailing slashes.
fn clean_target(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The short form.
fn short(s: &mut Svc<'_>, item: &Node, text: &str, key: &str) -> R<Volume> {
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => (None, *dst, None),
        [src, dst] => (Some(*src), *dst, None),
        [src, dst, mode] => (Some(*src), *dst, Some(*mode)),
        _ => return Err(Problem::new(&item.at, key, "a volume is [source:]target[:mode]")),
    };
    let mut vol = match src {
        None => anonymous(s, dst, item, key),
        Some(src) if src.starts_with(['.', '/', '~']) => Volume::bind(s.ctx.path(&item.at, src)).create_host_path(),
        Some(name) => named(s, item, name, key)?,
    }
    .at(dst);
    let bind = src.is_some_and(|src| src.starts_with(['.', '/', '~']));
    for m in mode.map(|m| m.split(',').collect::<Vec<_>>()).unwrap_or_default() {
        vol = match m {
            "ro" => vol.read_only(),
            "rw" | "" => vol,
            "z" if src.is_some() => vol.relabel(Relabel::Shared),
            "Z" if src.is_some() => vol.relabel(Relabel::Private),
            "nocopy" if !bind => vol.no_copy(),
            p if bind && Propagation::parse(p).is_some() => {
                vol.propagation(Propagation::parse(p).unwrap_or(Propagation::Rprivate))
            }
            m if NO_OP_MODES.contains(&m) => vol,
            other => {
                let what = if bind { "a bind mount" } else { "a volume" };
                return Err(Problem::new(
                    &item.at,
                    key,
                    format!("mode {other:?} does not apply to {what} (ro, rw, z, Z, nocopy, rshared, …)"),
                ));
            }
        };
    }
    Ok(vol)
}

/// A volume named in a service: declared at the top level.
fn named(s: &mut Svc<'_>, item: &Node, name: &str, key: &str) -> R<Volume> {
    match s.project.volumes.get(name) {
        Some(VolumeDecl::Owned(opts)) => {
            Ok(opts.iter().fold(Volume::named(name), |v, (k, val)| v.driver_opt(k.clone(), val.clone())))
        }
        Some(VolumeDecl::External(engine_name)) => Ok(Volume::external(engine_name)),
        None => Err(Problem::new(
            &item.at,
            key,
            format!("volume `{name}` is not declared under the top-level `volumes` (a host path starts with `.`, `/` or `~`)"),
        )),
    }
}

/// An anonymous volume, kept as a named volume of the service so its data survives a
/// replacement (Compose keeps an anonymous volume when it recreates a container).
fn anonymous(s: &mut Svc<'_>, target: &str, item: &Node, key: &str) -> Volume {
    let name: String = format!("{}{}", s.name, target.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    let name = name.trim_end_matches('-').to_lowercase();
    s.ctx.warn(
        &item.at,
        key,
        &format!("the anonymous volume at {target} is the named volume `{name}`: kept across replacements as Compose keeps it, and shared by the service's replicas"),
    );
    Volume::named(name)
}

/// The long form.
fn long(s: &mut Svc<'_>, v: &Node, key: &str) -> R<Volume> {
    values::only(
        v,
        key,
        &["type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs", "image"],
    )?;
    let kind = match v.get("type") {
        Some(t) => values::string(t, &format!("{key}.type"))?,
        None => "volume".into(),
    };
    let target =
        v.get("target").ok_or_else(|| Problem::new(&v.at, key, "needs `target`, the path in the container"))?;
    let target = values::string(target, &format!("{key}.target"))?;
    let source = v
        .get("source")
        .filter(|n| !matches!(n.value, Value::Null))
        .map(|n| values::string(n, &format!("{key}.source")))
        .transpose()?;
    let read_only = match v.get("read_only") {
        Some(r) => values::boolean(r, &format!("{key}.read_only"))?,
        None => false,
    };
    let option_keys = |n: &str, allowed: &[&str]| -> R<Option<&Node>> {
        match v.get(n) {
            Some(o) => {
                values::mapping(o, &format!("{key}.{n}"))?;
                values::only(o, &format!("{key}.{n}"), allowed)?;
                Ok(Some(o))
            }
            None => Ok(None),
        }
    };
    let bind_opts = option_keys("bind", &["propagation", "create_host_path", "selinux"])?;
    let volume_opts = option_keys("volume", &["nocopy", "subpath", "labels"])?;
    let tmpfs_opts = option_keys("tmpfs", &["size", "mode"])?;
    for (n, o, k) in [("bind", bind_opts, "bind"), ("volume", volume_opts, "volume"), ("tmpfs", tmpfs_opts, "tmpfs")] {
        if o.is_some() && kind != k {
            return Err(Problem::new(
                &v.at,
                format!("{key}.{n}"),
                format!("`{n}` options apply to a mount of type {n}, not {kind}"),
            ));
        }
    }
    let mut vol = match kind.as_str() {
        "bind" => {
            let src = source.ok_or_else(|| Problem::new(&v.at, key, "a bind mount needs `source`"))?;
            let mut vol = Volume::bind(s.ctx.path(&v.at, &src));
            if let Some(b) = bind_opts {
                if let Some(p) = b.get("propagation") {
                    let text = values::string(p, &format!("{key}.bind.propagation"))?;
                    let prop = Propagation::parse(&text).ok_or_else(|| {
                        Problem::new(
                            &p.at,
                            format!("{key}.bind.propagation"),
                            format!("{text:?} is not private, rprivate, shared, rshared, slave or rslave"),
                        )
                    })?;
                    vol = vol.propagation(prop);
                }
                if let Some(c) = b.get("create_host_path") {
                    if values::boolean(c, &format!("{key}.bind.create_host_path"))? {
                        vol = vol.create_host_path();
                    }
                }
                if let Some(l) = b.get("selinux") {
                    vol = match values::string(l, &format!("{key}.bind.selinux"))?.as_str() {
                        "z" => vol.relabel(Relabel::Shared),
                        "Z" => vol.relabel(Relabel::Private),
                        other => {
                            return Err(Problem::new(
                                &l.at,
                                format!("{key}.bind.selinux"),
                                format!("{other:?} is not z or Z"),
                            ))
                        }
                    };
                }
            }
            vol
        }
        "volume" => {
            let mut vol = match &source {
                Some(name) => named(s, v, name, key)?,
                None => anonymous(s, &target, v, key),
            };
            if let Some(o) = volume_opts {
                if let Some(n) = o.get("nocopy") {
                    if values::boolean(n, &format!("{key}.volume.nocopy"))? {
                        vol = vol.no_copy();
                    }
                }
                if let Some(sp) = o.get("subpath") {
                    s.ctx.cannot(
                        &sp.at,
                        &format!("{key}.volume.subpath"),
                        "a volume's subpath needs Docker Engine 26 (API 1.45); this library speaks to 20.10 and later",
                    )?;
                }
                if let Some(l) = o.get("labels") {
                    s.ctx.warn(
                        &l.at,
                        &format!("{key}.volume.labels"),
                        "volume labels are the library's own: these are not set",
                    );
                }
            }
            vol
        }
        "tmpfs" => {
            if let Some(src) = v.get("source") {
                return Err(Problem::new(&src.at, format!("{key}.source"), "a tmpfs mount has no source"));
            }
            let mut vol = Volume::tmpfs();
            if let Some(o) = tmpfs_opts {
                if let Some(size) = o.get("size") {
                    vol = vol.size_bytes(values::bytes(size, &format!("{key}.tmpfs.size"))?);
                }
                if let Some(m) = o.get("mode") {
                    vol = vol.mode(mode(m, &format!("{key}.tmpfs.mode"))?);
                }
            }
            vol
        }
        "npipe" => return Err(Problem::new(&v.at, format!("{key}.type"), "a named pipe is a Windows engine's mount")),
        "image" => {
            s.ctx.cannot(&v.at, &format!("{key}.type"), "an image mount needs Docker Engine 28 (API 1.48)")?;
            return Ok(Volume::tmpfs().at(target));
        }
        "cluster" => {
            s.ctx.cannot(&v.at, &format!("{key}.type"), "cluster volumes (CSI) are a swarm's")?;
            return Ok(Volume::tmpfs().at(target));
        }
        other => {
            return Err(Problem::new(&v.at, format!("{key}.type"), format!("{other:?} is not volume, bind or tmpfs")))
        }
    };
    vol = vol.at(target);
    if read_only {
        vol = vol.read_only();
    }
    Ok(vol)
}

/// A file mode: octal digits (`1777`, `0o1777`, `0755`), as Compose reads it.
fn mode(v: &Node, key: &str) -> R<u32> {
    let text = values::string(v, key)?;
    let digits = text.trim().trim_start_matches("0o").trim_start_matches("0O");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Problem::new(&v.at, key, format!("{text:?} is not an octal file mode such as 1777 or 0755")))
}

/// `tmpfs`: one path or a list of `path[:options]`.
pub(crate) fn tmpfs(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    let items: Vec<String> = values::strings(v, key)?;
    for (i, text) in items.iter().enumerate() {
        let ikey = if matches!(v.value, Value::Seq(_)) { format!("{key}[{i}]") } else { key.to_string() };
        let (path, opts) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let mut vol = Volume::tmpfs().at(path);
        for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            vol = match o.split_once('=') {
                Some(("size", size)) => vol.size_bytes(values::parse_bytes(size).ok_or_else(|| {
                    Problem::new(&v.at, &ikey, format!("tmpfs size {size:?} is not a size such as 64m"))
                })?),
                Some(("mode", m)) => {
                    vol.mode(u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| {
                        Problem::new(&v.at, &ikey, format!("tmpfs mode {m:?} is not octal permission bits"))
                    })?)
                }
                _ if o == "ro" => vol.read_only(),
                _ => vol.tmpfs_flag(o),
            };
        }
        add(s, vol, v, &ikey)?;
    }
    Ok(())
}

/// Secrets and configs: a `file` source is a read-only bind mount of the file, an `environment`
/// or `content` source a file written into the container before it starts, at
/// `/run/secrets/<name>` (secrets) or `/<name>` (configs) unless a `target` says otherwise, as
/// Compose gives them.
pub(crate) fn files(s: &mut Svc<'_>, v: &Node, key: &str, secrets: bool) -> R<()> {
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        let mut mode = None;
        let mut owner = Vec::new();
        let (name, target) = match &item.value {
            Value::Scalar { text, .. } => (text.clone(), None),
            Value::Map(_) => {
                values::only(item, &ikey, &["source", "target", "uid", "gid", "mode"])?;
                let name = item.get("source").ok_or_else(|| Problem::new(&item.at, &ikey, "needs `source`"))?;
                let name = values::string(name, &format!("{ikey}.source"))?;
                for (k, kv) in item.as_map().unwrap_or_default() {
                    match k.name.as_str() {
                        "uid" | "gid" => owner.push(k.clone()),
                        "mode" => mode = Some((file_mode(kv, &format!("{ikey}.mode"))?, k.clone())),
                        _ => {}
                    }
                }
                let target = item.get("target").map(|t| values::string(t, &format!("{ikey}.target"))).transpose()?;
                (name, target)
            }
            _ => return Err(Problem::new(&item.at, ikey, "a name or a mapping with `source`")),
        };
        let sources = if secrets { &s.project.secrets } else { &s.project.configs };
        let Some(source) = sources.get(&name).cloned() else {
            let what = if secrets { "secrets" } else { "configs" };
            return Err(Problem::new(&item.at, ikey, format!("`{name}` is not declared under the top-level `{what}`")));
        };
        let at = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) if secrets => format!("/run/secrets/{t}"),
            Some(t) => format!("/{t}"),
            None if secrets => format!("/run/secrets/{name}"),
            None => format!("/{name}"),
        };
        let written = match source {
            super::declared::FileSource::Path(file) => {
                for k in owner.iter().chain(mode.as_ref().map(|(_, k)| k)) {
                    s.ctx.warn(&k.at, &format!("{ikey}.{}", k.name), "not applied: a file is bind-mounted with its owner and mode on this machine, as Compose mounts it");
                }
                add(s, Volume::bind(file).at(at).read_only(), item, &ikey)?;
                continue;
            }
            super::declared::FileSource::Text(text) => ContainerFile::text(at, text),
            super::declared::FileSource::Secret(secret) => ContainerFile::secret(at, secret),
        };
        for k in &owner {
            s.ctx.warn(&k.at, &format!("{ikey}.{}", k.name), "not applied: a written file belongs to root");
        }
        let written = match mode {
            Some((m, _)) => written.mode(m),
            None => written,
        };
        s.d.files.push(written);
    }
    Ok(())
}

/// A file mode: a number, octal when it starts with `0` or `0o` (as Compose's YAML reads `0440`).
fn file_mode(v: &Node, key: &str) -> R<u32> {
    let text = values::string(v, key)?;
    let t = text.trim();
    let parsed = match t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        Some(oct) => u32::from_str_radix(oct, 8).ok(),
        None if t.len() > 1 && t.starts_with('0') => u32::from_str_radix(&t[1..], 8).ok(),
        None => t.parse().ok(),
    };
    parsed.filter(|m| *m <= 0o7777).ok_or_else(|| Problem::new(&v.at, key, format!("{t:?} is not a file mode")))
}
