//! `ports` and `expose`. A port is `[[ip:]host:]container[/protocol]` (ranges `3000-3005` and
//! `9090-9091:8080-8081` give one port each), or the long form with `target`, `published`,
//! `host_ip`, `protocol`, `mode`, `name` and `app_protocol` (any other key is refused, as Compose
//! refuses it). A container port alone is published on a host port the engine picks, on every
//! address, as Compose publishes it. `2222:22` is read as text, as the Compose Specification's
//! YAML reads it (docker-compose 1.x reads it as the base-60 number 133342).

use std::net::IpAddr;

use super::context::{Problem, R};
use super::draft::Svc;
use super::values;
use super::yaml::{Node, Value};
use crate::model::{Port, Publish};

/// Longest range of ports one entry may expand to.
const MAX_RANGE: u32 = 1024;

/// What one entry says.
struct Spec {
    container: (u16, u16),
    published: Option<(u16, u16)>,
    host_ip: Option<IpAddr>,
    udp: bool,
}

/// `ports`.
pub(crate) fn read(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        let spec = match &item.value {
            Value::Scalar { text, .. } => short(text).map_err(|why| Problem::new(&item.at, &ikey, why))?,
            Value::Map(_) => long(s, item, &ikey)?,
            _ => return Err(Problem::new(&item.at, ikey, "a port is a string, a number or a mapping")),
        };
        let spec = match one_of_range(s, spec, item, &ikey)? {
            Some(spec) => spec,
            None => continue,
        };
        for p in expand(&spec).map_err(|why| Problem::new(&item.at, &ikey, why))? {
            s.d.ports.retain(|q| {
                !(q.container == p.container
                    && q.protocol == p.protocol
                    && q.publish == p.publish
                    && q.host_ip == p.host_ip)
            });
            s.d.ports.push(p);
        }
    }
    Ok(())
}

/// A host range for one container port (`8000-9000:80`: the engine picks a free port of it)
/// cannot be expressed: refused, or, leniently, published on the range's first port (warned).
fn one_of_range(s: &mut Svc<'_>, spec: Spec, item: &Node, key: &str) -> R<Option<Spec>> {
    let Some((h0, h1)) = spec.published else { return Ok(Some(spec)) };
    if spec.container.0 != spec.container.1 || h0 == h1 {
        return Ok(Some(spec));
    }
    s.ctx.cannot(
        &item.at,
        key,
        &format!("host ports {h0}-{h1} for one container port: the engine would pick one of them, which a description cannot express; it is published on {h0}"),
    )?;
    Ok(Some(Spec { published: Some((h0, h0)), ..spec }))
}

/// `expose`: ports reachable on the environment's network, not published (they are the
/// container's exposed ports, which tools reading them, such as reverse proxies, see).
pub(crate) fn expose(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        let text = values::string(item, &ikey)?;
        let (spec, proto) = match text.rsplit_once('/') {
            Some((p, proto)) => (p, proto),
            None => (text.as_str(), "tcp"),
        };
        let udp = protocol(proto).map_err(|why| Problem::new(&item.at, &ikey, why))?;
        let range = range(spec).map_err(|why| Problem::new(&item.at, &ikey, why))?;
        for p in expand(&Spec { container: range, published: None, host_ip: None, udp })
            .map_err(|why| Problem::new(&item.at, &ikey, why))?
        {
            let p = Port { publish: Publish::No, ..p };
            if !s.d.exposed.iter().any(|q| q.container == p.container && q.protocol == p.protocol) {
                s.d.exposed.push(p);
            }
        }
    }
    Ok(())
}

fn protocol(p: &str) -> Result<bool, String> {
    match p {
        "tcp" | "" => Ok(false),
        "udp" => Ok(true),
        other => Err(format!("protocol {other:?} is not tcp or udp")),
    }
}

/// A port or a range `a-b`.
fn range(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} is not a port from 1 to 65535")),
        }
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            Ok((a, b))
        }
        None => {
            let p = port(text)?;
            Ok((p, p))
        }
    }
}

/// The short form.
fn short(text: &str) -> Result<Spec, String> {
    let (spec, proto) = match text.rsplit_once('/') {
        Some((s, p)) => (s, p),
        None => (text, "tcp"),
    };
    let udp = protocol(proto)?;
    // An IPv6 host address is bracketed: [::1]:80:8080 (or written bare: ::1:6000:6000).
    let (ip, rest): (Option<String>, &str) = match spec.strip_prefix('[') {
        Some(r) => {
            let (ip, rest) = r.split_once("]:").ok_or("a bracketed address is followed by :port")?;
            (Some(ip.to_string()), rest)
        }
        None => {
            let parts: Vec<&str> = spec.split(':').collect();
            if parts.len() > 3 {
                let n = parts.len();
                (Some(parts[..n - 2].join(":")), &spec[spec.len() - parts[n - 2].len() - parts[n - 1].len() - 1..])
            } else {
                (None, spec)
            }
        }
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match (ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (ip, [h, c]) => (ip, Some(*h), *c),
        (None, [ip, h, c]) => (Some(ip.to_string()), Some(*h), *c),
        _ => return Err("a port is [[ip:]host:]container[/protocol]".into()),
    };
    let host_ip = match ip.filter(|i| !i.is_empty()) {
        Some(i) => Some(i.parse::<IpAddr>().map_err(|_| format!("{i:?} is not an IP address"))?),
        None => None,
    };
    let published = match host.filter(|h| !h.is_empty()) {
        Some(h) => Some(range(h)?),
        None => None,
    };
    Ok(Spec { container: range(container)?, published, host_ip, udp })
}

/// The long form.
fn long(s: &mut Svc<'_>, v: &Node, key: &str) -> R<Spec> {
    values::only(v, key, &["target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"])?;
    let bad = |at: &super::yaml::At, k: &str, why: String| Problem::new(at, format!("{key}.{k}"), why);
    let target = v.get("target").ok_or_else(|| Problem::new(&v.at, key, "needs `target`, the container port"))?;
    let container =
        range(&values::string(target, &format!("{key}.target"))?).map_err(|w| bad(&target.at, "target", w))?;
    let published = match v.get("published").filter(|p| !matches!(p.value, Value::Null)) {
        Some(p) => {
            let text = values::string(p, &format!("{key}.published"))?;
            if text.is_empty() {
                None
            } else {
                Some(range(&text).map_err(|w| bad(&p.at, "published", w))?)
            }
        }
        None => None,
    };
    let host_ip = match v.get("host_ip") {
        Some(i) => {
            let t = values::string(i, &format!("{key}.host_ip"))?;
            let t = super::build::unbracket(&t);
            Some(t.parse::<IpAddr>().map_err(|_| bad(&i.at, "host_ip", format!("{t:?} is not an IP address")))?)
        }
        None => None,
    };
    let udp = match v.get("protocol") {
        Some(p) => protocol(&values::string(p, &format!("{key}.protocol"))?).map_err(|w| bad(&p.at, "protocol", w))?,
        None => false,
    };
    if let Some(m) = v.get("mode") {
        match values::string(m, &format!("{key}.mode"))?.as_str() {
            "ingress" | "host" => {}
            other => return Err(bad(&m.at, "mode", format!("{other:?} is not ingress or host"))),
        }
    }
    let _ = s;
    Ok(Spec { container, published, host_ip, udp })
}

/// One port per container port of a range; host and container ranges pair up.
fn expand(spec: &Spec) -> Result<Vec<Port>, String> {
    let (c0, c1) = spec.container;
    let count = u32::from(c1 - c0) + 1;
    if count > MAX_RANGE {
        return Err(format!("a range of {count} ports; at most {MAX_RANGE} per entry"));
    }
    if let Some((h0, h1)) = spec.published {
        let hcount = u32::from(h1 - h0) + 1;
        if hcount != count {
            return Err(if count == 1 {
                format!(
                    "host ports {h0}-{h1} for one container port: the engine would pick one of them, which a description cannot express; publish one host port"
                )
            } else {
                format!("host range {h0}-{h1} and container range {c0}-{c1} differ in length")
            });
        }
    }
    let mut out = Vec::new();
    for i in 0..count {
        let c = c0 + i as u16;
        let mut p = if spec.udp { Port::udp(c) } else { Port::tcp(c) };
        p = match spec.published {
            // Compose publishes a container port alone on a port the engine picks, on every address.
            None => p.publish_ephemeral().on_host_ip(spec.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            Some((h0, _)) => {
                let p = p.publish(h0 + i as u16);
                match spec.host_ip {
                    Some(ip) => p.on_host_ip(ip),
                    None => p,
                }
            }
        };
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Spec {
        short(text).unwrap()
    }

    #[test]
    fn short_forms() {
        let p = one("8080");
        assert_eq!((p.container, p.published, p.host_ip, p.udp), ((8080, 8080), None, None, false));
        let p = one("80:8080");
        assert_eq!((p.container, p.published), ((8080, 8080), Some((80, 80))));
        let p = one("127.0.0.1:80:8080/udp");
        assert_eq!((p.host_ip, p.udp), (Some("127.0.0.1".parse().unwrap()), true));
        let p = one("[::1]:6001:6001");
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        let p = one("::1:6000:6000");
        assert_eq!((p.host_ip, p.published), (Some("::1".parse().unwrap()), Some((6000, 6000))));
        let p = one("9090-9091:8080-8081");
        assert_eq!(expand(&p).unwrap().len(), 2);
        assert_eq!(expand(&one("3000-3005")).unwrap().len(), 6);
        assert_eq!(one("2222:22").published, Some((2222, 2222)), "text, not base 60");
        assert!(expand(&one("8000-9000:80")).is_err(), "one of a host range: not expressible");
        for bad in ["0", "70000", "a:b", "1.2.3.4.5:1:1", "80/sctp", "1:2:3:4:5"] {
            assert!(short(bad).and_then(|s| expand(&s)).is_err(), "{bad}");
        }
    }
}
