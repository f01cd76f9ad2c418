//! Renders Caddy's JSON configuration (Caddy 2.6 and later) for an [`Ingress`].

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::INGRESS_ROUTER_PORT as ROUTER_PORT;
use crate::model::{Ingress, Tls};

/// One instance in rotation for a service, with its share of the traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The instance's container name (resolvable on the environment network).
    pub instance: String,
    /// Relative weight (equal weights share equally; 0 takes no new requests).
    pub weight: u32,
}

/// The instances that receive traffic, per service.
pub type Rotation = BTreeMap<String, Vec<Upstream>>;

/// Where a router reaches instances that run on another host than its own: `(instance, container
/// port)` to `address:host port` (the other host's address and the port it publishes there).
pub type Remote = BTreeMap<(String, u16), String>;

/// The router tier's configuration for `ingress` with `rotation`: the routes, to the instances in
/// rotation. Upstreams are instance names, so Caddy resolves them on the environment network.
#[cfg(test)]
pub fn render(ingress: &Ingress, rotation: &Rotation) -> Value {
    render_for(ingress, rotation, &Remote::new())
}

/// The router tier's configuration for a router on one host of several: instances in `remote` are dialled at the
/// address given there (their host's published port), the others by name.
pub fn render_for(ingress: &Ingress, rotation: &Rotation, remote: &Remote) -> Value {
    let mut routes: Vec<(&crate::Route, Value)> = ingress
        .routes
        .iter()
        .map(|r| {
            let members = rotation.get(&r.service).map(Vec::as_slice).unwrap_or_default();
            let mut matcher = serde_json::Map::new();
            if !r.hosts.is_empty() {
                matcher.insert("host".into(), json!(r.hosts));
            }
            if let Some(p) = &r.path_prefix {
                let p = p.trim_end_matches('/');
                matcher.insert("path".into(), json!([if p.is_empty() { "/" } else { p }, format!("{p}/*")]));
            }
            let handler = proxy_handler(&r.service, r.port, members, remote);
            let mut route = json!({ "handle": [handler], "terminal": true });
            if !matcher.is_empty() {
                route["match"] = json!([Value::Object(matcher)]);
            }
            (r, route)
        })
        .collect();
    // Most specific first: routes with a host, then longer path prefixes.
    routes.sort_by_key(|(r, _)| {
        (r.hosts.is_empty(), std::cmp::Reverse(r.path_prefix.as_ref().map(|p| p.len()).unwrap_or(0)))
    });
    let routes: Vec<Value> = routes.into_iter().map(|(_, v)| v).collect();

    let server = json!({
        "listen": [format!(":{ROUTER_PORT}")],
        "routes": routes,
        "automatic_https": { "disable": true },
    });
    document(json!({ "grace_period": "30s", "servers": { "harbormaster": server } }), None)
}

/// The front tier's configuration: the published ports and TLS, every request to the router tier on
/// a new connection (so reconfiguring the router never closes a connection a client holds). It
/// depends only on the routes' hosts and TLS, never on the rotation.
pub fn render_front(ingress: &Ingress) -> Value {
    let proxy = json!({
        "handler": "reverse_proxy",
        "upstreams": [{ "dial": format!("{}:{ROUTER_PORT}", ingress.router.name) }],
        "transport": { "protocol": "http", "keep_alive": { "enabled": false } },
        "load_balancing": { "try_duration": "5s", "try_interval": "50ms" },
    });
    let mut hosts: Vec<&String> = ingress.routes.iter().flat_map(|r| &r.hosts).collect();
    hosts.sort();
    hosts.dedup();
    // While the front is drained (the marker file exists), each answer closes its connection, so
    // keep-alive clients move to the new front after their next request instead of finding an
    // idle connection closed under them.
    let (dir, marker) = crate::model::INGRESS_DRAIN_MARKER.rsplit_once('/').unwrap_or(("/", "draining"));
    let mut routes = vec![json!({
        "match": [{ "file": { "root": dir, "try_files": [format!("/{marker}")] } }],
        "handle": [{ "handler": "headers", "response": { "set": { "Connection": ["close"] }, "deferred": true } }],
    })];
    if !hosts.is_empty() {
        // Host matchers tell automatic HTTPS which names to get certificates for.
        routes.push(json!({ "match": [{ "host": hosts }], "handle": [proxy.clone()], "terminal": true }));
    }
    if ingress.routes.iter().any(|r| r.hosts.is_empty()) {
        routes.push(json!({ "handle": [proxy], "terminal": true }));
    } else {
        // A host no route names (a removed preview's, a typo) gets a 404 that says so, not
        // Caddy's empty 200 for a request nothing handled.
        routes.push(json!({
            "handle": [{ "handler": "static_response", "status_code": 404, "body": "no route for this host\n" }],
        }));
    }
    let mut listen = vec![format!(":{}", ingress.http_port)];
    let mut server = json!({ "routes": routes });
    let mut tls = None;
    match &ingress.tls {
        Tls::Off => {
            server["automatic_https"] = json!({ "disable": true });
        }
        Tls::Automatic { .. } | Tls::Internal => {
            if let Some(p) = ingress.https_port {
                listen = vec![format!(":{p}")];
                server["automatic_https"] = json!({ "skip": [] });
            }
            let issuer = match &ingress.tls {
                Tls::Automatic { email: Some(e) } => json!({ "module": "acme", "email": e }),
                Tls::Internal => json!({ "module": "internal" }),
                _ => json!({ "module": "acme" }),
            };
            tls = Some(json!({ "automation": { "policies": [{ "issuers": [issuer] }] } }));
            // No HTTP/3: its UDP socket is not shared between two fronts (no SO_REUSEPORT group),
            // so a front started beside the old one during an upgrade could not bind it and would
            // crash-loop. HTTP/1.1 and HTTP/2 over TLS are served.
            server["protocols"] = json!(["h1", "h2"]);
        }
    }
    server["listen"] = json!(listen);
    let mut doc = document(json!({ "grace_period": "30s", "servers": { "harbormaster": server } }), tls);
    if ingress.tls == Tls::Internal {
        // The local authority's root stays in the data volume: installing it into the
        // container's own trust store would only fail (no root, no tools) and log an error.
        doc["apps"]["pki"] = json!({ "certificate_authorities": { "local": { "install_trust": false } } });
    }
    doc
}

/// A whole Caddy configuration around an `http` app (and a `tls` app): the admin API is a Unix
/// socket in the container's file system; requests in flight when it changes get 30 s to finish.
fn document(http: Value, tls: Option<Value>) -> Value {
    let mut apps = serde_json::Map::new();
    apps.insert("http".into(), http);
    if let Some(t) = tls {
        apps.insert("tls".into(), t);
    }
    json!({
        "admin": { "listen": crate::model::INGRESS_ADMIN_ADDRESS },
        "logging": { "logs": { "default": { "level": "WARN" } } },
        "apps": Value::Object(apps),
    })
}

/// A `reverse_proxy` to the members, or a 503 that names the service when none is in rotation.
fn proxy_handler(service: &str, port: u16, members: &[Upstream], remote: &Remote) -> Value {
    let upstreams = weighted(members);
    if upstreams.is_empty() {
        return json!({
            "handler": "static_response",
            "status_code": 503,
            "headers": { "Retry-After": ["1"] },
            "body": format!("no instance of {service} is in rotation\n"),
        });
    }
    let dial = |i: &String| remote.get(&(i.clone(), port)).cloned().unwrap_or_else(|| format!("{i}:{port}"));
    let upstreams: Vec<Value> = upstreams.iter().map(|i| json!({ "dial": dial(i) })).collect();
    json!({
        "handler": "reverse_proxy",
        "upstreams": upstreams,
        "load_balancing": {
            "selection_policy": { "policy": "round_robin" },
            // A connection refused by an instance that is just going away is retried on another one.
            "try_duration": "5s",
            "try_interval": "50ms",
        },
        "health_checks": { "passive": { "fail_duration": "2s", "max_fails": 1 } },
        // The front tier is a trusted proxy: keep the client's X-Forwarded-* it sent.
        "trusted_proxies": crate::model::PRIVATE_RANGES,
    })
}

/// Expands weights into a round-robin list: each instance appears `weight / gcd` times, interleaved.
fn weighted(members: &[Upstream]) -> Vec<String> {
    let live: Vec<&Upstream> = members.iter().filter(|m| m.weight > 0).collect();
    let g = live.iter().fold(0, |g, m| gcd(g, m.weight)).max(1);
    let counts: Vec<u32> = live.iter().map(|m| m.weight / g).collect();
    let rounds = counts.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    for round in 0..rounds {
        for (m, c) in live.iter().zip(&counts) {
            if round < *c {
                out.push(m.instance.clone());
            }
        }
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A rotation that sends `percent` of the traffic to the `new` instances and the rest to `old`, each
/// set's share spread evenly over its instances.
pub(crate) fn split(old: &[String], new: &[String], percent: u8) -> Vec<Upstream> {
    let p = u32::from(percent.min(100));
    let (n_old, n_new) = (old.len().max(1) as u32, new.len().max(1) as u32);
    old.iter()
        .map(|i| Upstream { instance: i.clone(), weight: (100 - p) * n_new })
        .chain(new.iter().map(|i| Upstream { instance: i.clone(), weight: p * n_old }))
        .filter(|u| u.weight > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ingress, Route};

    fn ingress() -> Ingress {
        Ingress::builder()
            .image("caddy:2")
            .route(Route::to("web", 3000))
            .route(Route::to("api", 8080).host("shop.example.com").path_prefix("/api"))
            .build()
            .unwrap()
    }

    fn up(i: &str, w: u32) -> Upstream {
        Upstream { instance: i.into(), weight: w }
    }

    #[test]
    fn weights_expand_into_shares() {
        let list = weighted(&[up("a", 80), up("b", 20)]);
        assert_eq!(list.iter().filter(|x| *x == "a").count(), 4);
        assert_eq!(list.iter().filter(|x| *x == "b").count(), 1);
        assert_eq!(weighted(&[up("a", 1), up("b", 1), up("c", 0)]), vec!["a", "b"]);
        assert!(weighted(&[]).is_empty());
    }

    #[test]
    fn specific_routes_come_first_and_empty_rotation_answers_503() {
        let rotation = Rotation::from([("api".to_string(), vec![up("x-api-0-1", 1)])]);
        let cfg = render(&ingress(), &rotation);
        let routes = cfg["apps"]["http"]["servers"]["harbormaster"]["routes"].as_array().unwrap();
        assert_eq!(routes[0]["match"][0]["host"][0], "shop.example.com");
        assert_eq!(routes[0]["match"][0]["path"][1], "/api/*");
        assert_eq!(routes[0]["handle"][0]["upstreams"][0]["dial"], "x-api-0-1:8080");
        assert_eq!(routes[1]["handle"][0]["handler"], "static_response");
        assert_eq!(routes[1]["handle"][0]["status_code"], 503);
        assert_eq!(cfg["admin"]["listen"], crate::model::INGRESS_ADMIN_ADDRESS);
        assert_eq!(cfg["apps"]["http"]["servers"]["harbormaster"]["automatic_https"]["disable"], true);
    }

    #[test]
    fn instances_on_other_hosts_are_dialled_at_their_published_port() {
        let rotation = Rotation::from([("api".to_string(), vec![up("x-api-0-1", 1), up("x-api-1-2", 1)])]);
        let remote = Remote::from([(("x-api-1-2".to_string(), 8080), "10.0.0.2:18080".to_string())]);
        let cfg = render_for(&ingress(), &rotation, &remote);
        let upstreams = &cfg["apps"]["http"]["servers"]["harbormaster"]["routes"][0]["handle"][0]["upstreams"];
        assert_eq!(upstreams[0]["dial"], "x-api-0-1:8080", "same host: by name");
        assert_eq!(upstreams[1]["dial"], "10.0.0.2:18080", "other host: its address and published port");
    }

    #[test]
    fn the_front_knows_hosts_and_tls_but_never_the_rotation() {
        let cfg = render_front(&ingress());
        let server = &cfg["apps"]["http"]["servers"]["harbormaster"];
        assert_eq!(server["listen"][0], ":80");
        let routes = server["routes"].as_array().unwrap();
        // First, while the front drains: every answer closes its connection.
        assert_eq!(routes[0]["match"][0]["file"]["try_files"][0], "/draining");
        assert_eq!(routes[0]["handle"][0]["response"]["set"]["Connection"][0], "close");
        assert!(routes[0].get("terminal").is_none(), "the drain route only adds a header");
        let routes = &routes[1..];
        assert_eq!(routes[0]["match"][0]["host"][0], "shop.example.com");
        assert!(routes[1].get("match").is_none(), "a route without host makes a catch-all");
        let proxy = &routes[0]["handle"][0];
        assert_eq!(proxy["upstreams"][0]["dial"], "ingress-router:8000");
        assert_eq!(proxy["transport"]["keep_alive"]["enabled"], false);
        assert_eq!(serde_json::to_string(&cfg).unwrap().matches("x-api").count(), 0);

        let tls = Ingress::builder()
            .image("caddy:2")
            .https(crate::Port::tcp(443))
            .tls(Tls::Automatic { email: Some("ops@example.com".into()) })
            .route(Route::to("web", 3000).host("shop.example.com"))
            .build()
            .unwrap();
        let cfg = render_front(&tls);
        assert_eq!(cfg["apps"]["http"]["servers"]["harbormaster"]["listen"][0], ":443");
        assert_eq!(cfg["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]["email"], "ops@example.com");
        let router = render(&tls, &Rotation::new());
        assert_eq!(router["apps"]["http"]["servers"]["harbormaster"]["listen"][0], ":8000");
        assert!(router["apps"].get("tls").is_none(), "TLS ends at the front");
    }
}
