//! [`Ingress`]: the environment's entry point from outside, a reverse proxy that routes by host name
//! and path to services, and through which rollouts move traffic. The proxy is Caddy, driven live
//! through its admin API (see [`crate::ingress`]).

use std::time::Duration;

use serde::Serialize;

use super::{Build, ContainerFile, HealthCheck, NetworkMode, Port, Rollout, Service, ServiceBuilder};
use crate::error::ValidationError;

/// Where the Caddy configuration file is written inside the ingress containers.
pub(crate) const CONFIG_PATH: &str = "/etc/harbormaster/caddy.json";

/// A file whose presence in a front makes it answer every request with `Connection: close`: it
/// is written into a front about to stop.
pub(crate) const DRAIN_MARKER: &str = "/etc/harbormaster/draining";

/// Where each Caddy of the ingress serves its admin API: a Unix socket in the container's own
/// file system, so two fronts sharing a network namespace never compete for an admin port, and
/// the API is never on a network.
pub(crate) const ADMIN_ADDRESS: &str = "unix//etc/harbormaster/admin.sock";

/// The listener's configuration: no admin API, no app; Caddy only keeps the process (and so the
/// network namespace and its published ports) alive.
const LISTENER_CONFIG: &str = "{\"admin\":{\"disabled\":true}}\n";

/// Where the listener's configuration is written.
const LISTENER_CONFIG_PATH: &str = "/etc/harbormaster/listener.json";

/// `caddy reload` of the configuration file through the container's own admin socket: how the
/// ingress loads a configuration, and how a front or router shows it is ready.
pub(crate) fn reload_command(caddy_binary: &str) -> Vec<String> {
    [caddy_binary, "reload", "--config", CONFIG_PATH, "--address", ADMIN_ADDRESS].map(String::from).to_vec()
}

/// The kernel setting that hands the connections waiting in a closing listening socket's queue to
/// another socket of its `SO_REUSEPORT` group (Linux 5.14 and later), instead of resetting them.
pub(crate) const MIGRATE_SYSCTL: &str = "net.ipv4.tcp_migrate_req";

/// The private address ranges: the proxies in front of a Caddy of the library (its front, the
/// edge of previews) are trusted to pass the client's `X-Forwarded-*` on.
pub(crate) const PRIVATE_RANGES: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

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
    /// Certificates from Caddy's own local certificate authority, for every route host, at once
    /// and with no network access: a private network, a preview environment behind a VPN, a test.
    /// Clients must trust the authority's root certificate, which the front keeps in its data
    /// volume (`<ingress>-data`) at `/data/caddy/pki/authorities/local/root.crt`. HTTP is
    /// redirected to HTTPS as with [`Tls::Automatic`].
    Internal,
}

impl Tls {
    /// Whether certificates are issued (and so an HTTPS port and stored certificates are needed).
    pub(crate) fn issues_certificates(&self) -> bool {
        !matches!(self, Tls::Off)
    }
}

/// The environment's reverse proxy: Caddy in two tiers behind a listener, each a service of the
/// environment, from one Caddy image: the official `caddy:2` where a registry is reachable, or
/// one built locally (see [`crate::ingress::caddy_build_context`]).
///
/// - The **listener** (service `ingress` unless [named](IngressBuilder::name) otherwise) holds the
///   network namespace and the published ports, and runs nothing but an idle Caddy. It is
///   replaced only when its ports change; a new image alone leaves it running.
/// - The **front** (`ingress-front`) runs in the listener's network namespace, listens on the
///   ports and terminates TLS. It is upgraded (image, settings, certificates) start-first: the new
///   front listens on the same ports beside the old one (Caddy's listeners use `SO_REUSEPORT`),
///   then the old one stops; with `net.ipv4.tcp_migrate_req` (set in the listener's namespace
///   where the kernel has it, Linux 5.14 and later) connections waiting in its queue move to the
///   new one. No request is refused and requests in flight finish. Its configuration changes only
///   when routes or TLS do, so a traffic move never closes a connection a client holds.
/// - The **router** (`ingress-router`) holds the routes and the instances in rotation and is
///   reconfigured at every traffic move. The front opens a new connection to it per request, and
///   Caddy finishes requests in flight across a reconfiguration.
///
/// Nothing of this needs more of a host than Docker itself: no host network, no iptables rules of
/// its own, no root beyond the engine's (see `docs/zero-downtime.md`).
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
    pub(crate) listener: Service,
    pub(crate) front: Service,
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

    /// The service named as the ingress (`ingress`): the listener, which holds the network
    /// namespace and the published ports; its endpoints are the ingress's.
    pub fn service(&self) -> &Service {
        &self.listener
    }

    /// The front tier's service (`<name>-front`): Caddy in the listener's network namespace,
    /// serving the ports and terminating TLS; its configuration only changes when routes or TLS
    /// do. Clients' connections end here.
    pub fn front(&self) -> &Service {
        &self.front
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

    /// The three services of the ingress, in the order they start: router, listener, front.
    pub(crate) fn services(&self) -> [&Service; 3] {
        [&self.router, &self.listener, &self.front]
    }

    /// Whether `service` is one of the ingress's own services.
    pub(crate) fn is_own(&self, service: &str) -> bool {
        self.services().iter().any(|s| s.name == service)
    }

    /// The container port plain HTTP is served on.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Whether a service is the target of a route.
    pub fn routes_to(&self, service: &str) -> bool {
        self.routes.iter().any(|r| r.service == service)
    }

    /// An ingress from the same Caddy image (and binary, role and grace), named `name`, serving
    /// `routes` in plain HTTP on container port 80, published nowhere: a preview's own ingress
    /// behind a shared edge ([`crate::preview`]).
    pub(crate) fn unpublished_like(&self, name: &str, routes: Vec<Route>) -> Result<Ingress, ValidationError> {
        let mut b =
            Ingress::builder().name(name).caddy_binary(self.caddy_binary.clone()).stop_grace(self.front.stop_grace);
        match &self.listener.image {
            super::ImageSource::Reference(r) => b.image = Some(r.clone()),
            super::ImageSource::Build(build) => b.build = Some(build.clone()),
        }
        b.role = self.listener.role.clone();
        routes.into_iter().fold(b, IngressBuilder::route).build()
    }

    /// A service `name` of the ingress's Caddy image, on its role, with Caddy's data and
    /// configuration directories set as the ingress's own: what the edge's relays run.
    pub(crate) fn caddy_service(&self, name: impl Into<String>) -> ServiceBuilder {
        let b = match &self.listener.image {
            super::ImageSource::Reference(r) => Service::builder(name).image(r.clone()),
            super::ImageSource::Build(build) => Service::builder(name).build_from(build.clone()),
        };
        let b = match &self.listener.role {
            Some(r) => b.role(r.clone()),
            None => b,
        };
        b.env("XDG_DATA_HOME", "/data").env("XDG_CONFIG_HOME", "/config")
    }

    /// Adds routes to a built ingress (the edge's, one per preview): they are checked against the
    /// services when the environment is built.
    pub(crate) fn with_routes(mut self, routes: impl IntoIterator<Item = Route>) -> Ingress {
        self.routes.extend(routes);
        self
    }

    /// The Caddy binary's path in the image.
    pub(crate) fn caddy_binary(&self) -> &str {
        &self.caddy_binary
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

    /// The HTTPS port and how it is published (with [`Tls::Automatic`] or [`Tls::Internal`]).
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
        if self.tls.issues_certificates() && https_port.is_none() {
            return Err(invalid("TLS needs an HTTPS port; add .https(Port::tcp(443).publish(443))".into()));
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
            Ok(b.env("XDG_DATA_HOME", "/data").env("XDG_CONFIG_HOME", "/config"))
        };
        let run = |config: &str| [self.caddy_binary.clone(), "run".into(), "--config".into(), config.into()];
        // Ready once its own admin API answers with its configuration running. Through the
        // engine (exec), so it holds wherever the library cannot reach a container's ports (a
        // remote engine probed through published ports); for a front, a probe of the port could
        // also be answered by the old front, which listens on it too.
        let ready = HealthCheck::exec(reload_command(&self.caddy_binary))
            .interval(Duration::from_millis(500))
            .start_interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(10));
        let router_name = format!("{}-router", self.name);
        let router = caddy(router_name.clone())?
            .command(run(CONFIG_PATH))
            .stop_grace_period(self.stop_grace)
            .port(Port::tcp(ROUTER_PORT))
            .health(ready.clone())
            .build()?;

        let fixed = std::iter::once(&self.http)
            .chain(self.https.as_ref())
            .any(|p| matches!(p.publish, super::Publish::Fixed(_)));
        let mut listener = caddy(self.name.clone())?
            .command(run(LISTENER_CONFIG_PATH))
            .file(ContainerFile::text(LISTENER_CONFIG_PATH, LISTENER_CONFIG))
            .sysctl(MIGRATE_SYSCTL, "1")
            .stop_grace_period(Duration::from_secs(1))
            .port(self.http);
        if let Some(p) = self.https {
            listener = listener.port(p);
        }
        if fixed {
            // Its ports stay where they are: a new listener can only have them once the old one
            // released them.
            listener = listener.rollout(Rollout::recreate());
        }
        let mut listener = listener.build()?;
        listener.keep_image = true;

        let mut front = caddy(format!("{}-front", self.name))?;
        if self.tls.issues_certificates() {
            // Certificates and ACME accounts outlive a front: its replacement (and a second front
            // beside it during an upgrade) use the same storage, which Caddy locks for itself.
            front = front.volume(super::Volume::named(format!("{}-data", self.name)).at("/data"));
        }
        let front = front
            .command(run(CONFIG_PATH))
            .stop_grace_period(self.stop_grace)
            .network_mode(NetworkMode::Service(self.name.clone()))
            .health(ready)
            .depends_on(router_name, super::Condition::Healthy)
            .rollout(Rollout::start_first().drain(Duration::from_secs(1)))
            .build()?;
        Ok(Ingress {
            listener,
            front,
            router,
            routes: self.routes,
            tls: self.tls,
            http_port,
            https_port,
            caddy_binary: self.caddy_binary,
        })
    }
}
