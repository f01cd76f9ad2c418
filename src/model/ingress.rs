//! [`Ingress`]: the environment's entry point from outside, a reverse proxy that routes by host name
//! and path to services, and through which rollouts move traffic. The proxy is Caddy, driven live
//! through its admin API (see [`crate::ingress`]).

use std::time::Duration;

use serde::Serialize;

use super::{Build, HealthCheck, Port, Rollout, Service, ServiceBuilder};
use crate::error::ValidationError;

/// Where the Caddy configuration file is written inside the ingress containers.
pub(crate) const CONFIG_PATH: &str = "/etc/harbormaster/caddy.json";

/// The port the router tier listens on, inside the environment network only.
pub(crate) const ROUTER_PORT: u16 = 8000;

/// A route from the outside to a service's container port.
///
/// ```
/// use harbormaster::Route;
/// let api = Route::to("api", 8080).host("shop.example.com").path_prefix("/api");
/// let web = Route::to("web", 3000).host("shop.example.com");
/// # let _ = (api, web);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub(crate) service: String,
    pub(crate) port: u16,
    pub(crate) hosts: Vec<String>,
    pub(crate) path_prefix: Option<String>,
}

impl Route {
    /// Traffic for this route goes to `service`'s container `port`, on the instances in rotation.
    pub fn to(service: impl Into<String>, port: u16) -> Self {
        Route { service: service.into(), port, hosts: Vec::new(), path_prefix: None }
    }

    /// Only requests for this host name (may be given several times). Without any, every host matches.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Only requests whose path starts with this prefix (such as `/api`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// The target service.
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// Certificates for the ingress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tls {
    /// Plain HTTP only (tests, or TLS terminated in front of the ingress).
    Off,
    /// Caddy's automatic HTTPS: certificates from an ACME CA for every route host, renewed by
    /// Caddy, HTTP redirected to HTTPS. The ingress must be reachable on ports 80 and 443.
    Automatic {
        /// Contact address given to the CA.
        email: Option<String>,
    },
}

/// The environment's reverse proxy, Caddy in two tiers, each a service of the environment, from a
/// Caddy image: the official `caddy:2` where a registry is reachable, or one built locally (see
/// [`crate::ingress::caddy_build_context`]).
///
/// - The **front** (service `ingress` unless [named](IngressBuilder::name) otherwise) publishes the
///   ports and terminates TLS. Its configuration changes only when routes or TLS do, so the
///   connections clients hold are never closed by a traffic move.
/// - The **router** (`ingress-router`) holds the routes and the instances in rotation and is
///   reconfigured at every traffic move. The front opens a new connection to it per request, and
///   Caddy finishes requests in flight across a reconfiguration.
///
/// ```
/// use harbormaster::{Ingress, Port, Route, Tls};
/// let ingress = Ingress::builder()
///     .image("caddy:2")
///     .http(Port::tcp(80).publish(80))
///     .https(Port::tcp(443).publish(443))
///     .tls(Tls::Automatic { email: Some("ops@example.com".into()) })
///     .route(Route::to("web", 3000).host("shop.example.com"))
///     .build()?;
/// # let _ = ingress;
/// # Ok::<_, harbormaster::ValidationError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ingress {
    pub(crate) service: Service,
    pub(crate) router: Service,
    pub(crate) routes: Vec<Route>,
    pub(crate) tls: Tls,
    pub(crate) http_port: u16,
    pub(crate) https_port: Option<u16>,
    pub(crate) caddy_binary: String,
}

impl Ingress {
    /// Starts describing the ingress.
    pub fn builder() -> IngressBuilder {
        IngressBuilder {
            name: "ingress".into(),
            image: None,
            build: None,
            http: Port::tcp(80),
            https: None,
            routes: Vec::new(),
            tls: Tls::Off,
            caddy_binary: "caddy".into(),
            stop_grace: Duration::from_secs(10),
            role: None,
        }
    }

    /// The front tier's service: it holds the published ports and TLS, and its configuration only
    /// changes when routes or TLS do. Clients' connections end here.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The router tier's service (`<name>-router`): it holds the routes and the rotation and is
    /// reconfigured at every traffic move. The front opens a new connection to it per request, so a
    /// reconfiguration never closes a connection a client holds.
    pub fn router(&self) -> &Service {
        &self.router
    }

    /// The routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The container port plain HTTP is served on.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Whether a service is the target of a route.
    pub fn routes_to(&self, service: &str) -> bool {
        self.routes.iter().any(|r| r.service == service)
    }
}

/// Builder for [`Ingress`].
#[derive(Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct IngressBuilder {
    name: String,
    image: Option<String>,
    build: Option<Build>,
    http: Port,
    https: Option<Port>,
    routes: Vec<Route>,
    tls: Tls,
    caddy_binary: String,
    stop_grace: Duration,
    role: Option<String>,
}

impl IngressBuilder {
    /// The role that places both tiers of the proxy on hosts (see
    /// [`ServiceBuilder::role`](crate::ServiceBuilder::role)), such as a gateway server. The router
    /// reaches instances on its own host by name and instances on other hosts at their host's
    /// address and published port: a routed service that runs elsewhere must publish the routed
    /// port (an ephemeral port will do).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The service name of the proxy (default `ingress`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A Caddy image reference the engine already has.
    pub fn image(mut self, reference: impl Into<String>) -> Self {
        self.image = Some(reference.into());
        self
    }

    /// A Caddy image built from a context.
    pub fn build_from(mut self, build: Build) -> Self {
        self.build = Some(build);
        self
    }

    /// The plain-HTTP port and how it is published (default container port 80, not published).
    pub fn http(mut self, port: Port) -> Self {
        self.http = port;
        self
    }

    /// The HTTPS port and how it is published (with [`Tls::Automatic`]).
    pub fn https(mut self, port: Port) -> Self {
        self.https = Some(port);
        self
    }

    /// Adds a route.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Certificates (default [`Tls::Off`]).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// The path of the `caddy` binary inside the image (default `caddy`, found on `PATH`).
    pub fn caddy_binary(mut self, path: impl Into<String>) -> Self {
        self.caddy_binary = path.into();
        self
    }

    /// How long the proxy may finish requests in flight when it is itself stopped (default 10 s).
    pub fn stop_grace(mut self, d: Duration) -> Self {
        self.stop_grace = d;
        self
    }

    /// Validates the ingress and the service it runs as. Routes are checked against the services
    /// when the environment is built.
    pub fn build(self) -> Result<Ingress, ValidationError> {
        let invalid = |reason: String| ValidationError::InvalidValue {
            owner: format!("ingress `{}`", self.name),
            field: "ingress",
            reason,
        };
        let http_port = self.http.container;
        let https_port = self.https.as_ref().map(|p| p.container);
        if matches!(self.tls, Tls::Automatic { .. }) && https_port.is_none() {
            return Err(invalid("automatic TLS needs an HTTPS port; add .https(Port::tcp(443).publish(443))".into()));
        }
        for r in &self.routes {
            if let Some(p) = &r.path_prefix {
                if !p.starts_with('/') || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid(format!(
                        "path prefix {p:?} of the route to {} must start with '/' and hold no spaces or control characters",
                        r.service
                    )));
                }
            }
            let host_ok = |h: &str| {
                let h = h.strip_prefix("*.").unwrap_or(h);
                !h.is_empty()
                    && h.len() <= 253
                    && h.split('.').all(|l| {
                        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            };
            if !r.hosts.iter().all(|h| host_ok(h)) {
                return Err(invalid(format!("a host of the route to {} is not a host name", r.service)));
            }
        }
        let caddy = |name: String| -> Result<ServiceBuilder, ValidationError> {
            let b = Service::builder(name);
            let b = match (&self.image, &self.build) {
                (Some(i), None) => b.image(i.clone()),
                (None, Some(build)) => b.build_from(build.clone()),
                _ => return Err(invalid("give exactly one of .image(..) or .build_from(..)".into())),
            };
            let b = match &self.role {
                Some(r) => b.role(r.clone()),
                None => b,
            };
            Ok(b.command([self.caddy_binary.clone(), "run".into(), "--config".into(), CONFIG_PATH.into()])
                .env("XDG_DATA_HOME", "/data")
                .env("XDG_CONFIG_HOME", "/config")
                .stop_grace_period(self.stop_grace))
        };
        let tcp = |port: u16| {
            HealthCheck::tcp(port).interval(Duration::from_millis(500)).start_interval(Duration::from_millis(25))
        };
        let router_name = format!("{}-router", self.name);
        let router = caddy(router_name.clone())?.port(Port::tcp(ROUTER_PORT)).health(tcp(ROUTER_PORT)).build()?;
        let fixed = std::iter::once(&self.http)
            .chain(self.https.as_ref())
            .any(|p| matches!(p.publish, super::Publish::Fixed(_)));
        let mut b = caddy(self.name.clone())?
            .port(self.http)
            .health(tcp(http_port))
            .depends_on(router_name, super::Condition::Healthy);
        if let Some(p) = self.https {
            b = b.port(p);
        }
        if fixed {
            b = b.rollout(Rollout::recreate());
        }
        let service = b.build()?;
        Ok(Ingress {
            service,
            router,
            routes: self.routes,
            tls: self.tls,
            http_port,
            https_port,
            caddy_binary: self.caddy_binary,
        })
    }
}
