//! The edge: one environment holding the shared ingress (published ports, TLS) and, per live
//! preview, a relay: a small Caddy on the edge's network and on the preview's own network that
//! passes the preview's host names on to the preview's own ingress. Previews never share a
//! network; the edge's routes are its relays, so adding or removing a preview is an apply of the
//! edge (its front replaced start-first, as any route change is).

use serde_json::json;

use crate::backend::Scope;
use crate::error::ValidationError;
use crate::model::{ContainerFile, Environment, HealthCheck, Ingress, Port, Route, Service};

/// The port a relay listens on, on the edge's network.
pub(crate) const RELAY_PORT: u16 = 8080;

/// The name of every preview's own ingress (its listener; `-front` and `-router` beside it).
pub(crate) const PREVIEW_INGRESS: &str = "preview-ingress";

/// Where a relay's configuration is written.
const RELAY_CONFIG: &str = "/etc/harbormaster/relay.json";

/// The edge's relay service for preview `name`.
pub(crate) fn relay_name(preview: &str) -> String {
    format!("to-{preview}")
}

/// A live preview as the edge routes it.
pub(crate) struct Routed {
    pub(crate) name: String,
    pub(crate) hosts: Vec<String>,
}

/// The edge environment for `routed` previews of `project`.
pub(crate) fn environment(
    project: &str,
    edge_name: &str,
    ingress: &Ingress,
    routed: &[Routed],
    actor: Option<&str>,
) -> Result<Environment, ValidationError> {
    let mut relays = Vec::new();
    let mut routes = Vec::new();
    for p in routed {
        relays.push(relay(project, &p.name, ingress)?);
        routes.push(p.hosts.iter().fold(Route::to(relay_name(&p.name), RELAY_PORT), |r, h| r.host(h.clone())));
    }
    let mut b = Environment::builder(project, edge_name)
        .ingress(ingress.clone().with_routes(routes))
        .services(relays)
        .lock_timeout(std::time::Duration::from_secs(120));
    if let Some(a) = actor {
        b = b.actor(a);
    }
    b.build()
}

/// One preview's relay: the edge's Caddy image, on the preview's network too, passing every
/// request (its `Host` kept) to the preview's ingress.
pub(crate) fn relay(project: &str, preview: &str, ingress: &Ingress) -> Result<Service, ValidationError> {
    let config = json!({
        "admin": { "disabled": true },
        "logging": { "logs": { "default": { "level": "WARN" } } },
        "apps": { "http": { "grace_period": "30s", "servers": { "relay": {
            "listen": [format!(":{RELAY_PORT}")],
            "automatic_https": { "disable": true },
            "routes": [{ "handle": [{
                "handler": "reverse_proxy",
                "upstreams": [{ "dial": format!("{PREVIEW_INGRESS}:80") }],
                "load_balancing": { "try_duration": "5s", "try_interval": "50ms" },
                // The edge is a trusted proxy: keep the client's X-Forwarded-* it sent.
                "trusted_proxies": crate::model::PRIVATE_RANGES,
            }] }],
        } } } },
    });
    ingress
        .caddy_service(relay_name(preview))
        .command([ingress.caddy_binary(), "run", "--config", RELAY_CONFIG])
        .file(ContainerFile::text(RELAY_CONFIG, format!("{config:#}\n")))
        .port(Port::tcp(RELAY_PORT))
        .join_network(Scope::new(project, preview).network_name())
        .health(HealthCheck::tcp(RELAY_PORT).interval(std::time::Duration::from_millis(200)).retries(100))
        .stop_grace_period(std::time::Duration::from_secs(5))
        .build()
}
