//! Preview environments: one per branch or pull request, from a base [`Environment`], each on its
//! own network with its own data, all answering through one shared ingress (the *edge*) on host
//! names such as `pr-123.preview.example.com`; with a time to live, an idle expiry and a maximum
//! number alive, and managed by name from any process (a CI job per event).
//!
//! ```no_run
//! use std::time::Duration;
//! use harbormaster::preview::{PreviewName, Previews};
//! use harbormaster::{DockerBackend, Environment, Ingress, Port, Tls};
//!
//! # async fn run(base: Environment) -> harbormaster::Result<()> {
//! let docker = DockerBackend::connect().await?;
//! let edge = Ingress::builder()
//!     .image("caddy:2")
//!     .http(Port::tcp(80).publish(80))
//!     .https(Port::tcp(443).publish(443))
//!     .tls(Tls::Automatic { email: Some("ops@example.com".into()) })
//!     .build()?;
//! let previews = Previews::builder(&base, edge, "preview.example.com")
//!     .ttl(Duration::from_secs(7 * 86_400))        // a week at most
//!     .idle_expiry(Duration::from_secs(2 * 86_400)) // two days without a push
//!     .max_live(10)                                // the oldest goes first
//!     .build()?;
//!
//! // "pull request 123 opened or pushed"
//! let preview = previews.preview(PreviewName::pull_request(123)).image("api", "registry.example.com/shop/api:sha-4f2a").build()?;
//! println!("{}", previews.plan(&docker, &preview).await?); // what changes, what it removes and why
//! let up = previews.up(&docker, &preview).await?;
//! println!("{}", up.urls().join(" "));
//!
//! // "pull request 123 closed", and a nightly sweep, from any process
//! previews.down(&docker, "pr-123").await?;
//! previews.expire(&docker).await?;
//! # Ok(()) }
//! ```
//!
//! What a preview is:
//! - The base's services under environment name [`PreviewName::name`] (same project): its own
//!   network, its own named volumes, its own records (revisions, audit, lock), so pushes are
//!   rollouts like any other (zero-downtime, health-gated, [`Environment::rollback`] works).
//! - Overrides per preview ([`PreviewBuilder`]): an image, environment variables, services added
//!   or replaced (a fixture loader), data seeded from the base's latest backup (feature
//!   `backup`). A fixed host port of the base is published on an ephemeral port instead (two
//!   previews cannot hold one port), and the plan says so.
//! - Its own ingress (`preview-ingress`, published nowhere) with the base's routes (or the
//!   [`PreviewsBuilder::route`]s), their hosts mapped to the preview's: the first host to
//!   `<name>.<domain>`, another such as `api.shop.example.com` to `<name>-api.<domain>`.
//!
//! The edge (`ops.rs` keeps it in line; `edge.rs` builds it) is environment
//! [`PreviewsBuilder::edge_name`] (default `previews`) with the ingress given to
//! [`Previews::builder`] and one relay service per preview (`to-<name>`) on the edge's network
//! and the preview's; its routes are the previews' hosts. Which previews are alive, when each was
//! created and last deployed, is read from the target (labels and audit records), never from the
//! calling process: a CI job that lists, pushes or removes sees what every other one did. Changes
//! to the set of previews are serialised by a lock on the target (taken over from a process that
//! died, as the deploy lock is); pushes to different previews run in parallel.
//!
//! Targets: the local engine, an [`SshHost`](crate::SshHost), and a [`Fleet`](crate::Fleet) where
//! the edge and each preview's ingress share a host (one role for both). A Docker Swarm or
//! Fly.io cannot join a container to a second environment's network (a relay): there
//! [`Previews::plan`] and [`Previews::up`] fail with [`ErrorKind::Unsupported`](crate::ErrorKind)
//! and the target's own reason, before anything changes.

mod edge;
mod lifetime;
mod name;
mod ops;
#[cfg(feature = "backup")]
mod seed;

pub use lifetime::{Removal, RemovalReason};
pub use name::PreviewName;
pub use ops::{PreviewPlan, PreviewUp};
#[cfg(feature = "backup")]
pub use seed::Seed;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::ValidationError;
use crate::model::{Environment, Ingress, Publish, Route};

/// Label (an environment mark) naming the edge a preview belongs to.
pub(crate) const MARK_EDGE: &str = "io.harbormaster.preview.edge";
/// Label: when the preview was first brought up (Unix seconds).
pub(crate) const MARK_CREATED: &str = "io.harbormaster.preview.created";
/// Label: the digest of what the preview shows ([`PreviewName::source_digest`]).
pub(crate) const MARK_SOURCE: &str = "io.harbormaster.preview.source";

/// Previews of one base environment behind one edge: how they are named, routed, and how long
/// they live. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Previews {
    base: Environment,
    edge: Ingress,
    edge_name: String,
    domain: String,
    routes: Vec<Route>,
    lifetime: lifetime::Lifetime,
    actor: Option<String>,
}

/// Builder for [`Previews`].
#[derive(Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct PreviewsBuilder {
    previews: Previews,
}

impl Previews {
    /// Previews of `base` behind the shared ingress `edge` (its ports, TLS and Caddy image; its
    /// routes are the previews'), with host names under `domain`.
    pub fn builder(base: &Environment, edge: Ingress, domain: impl Into<String>) -> PreviewsBuilder {
        PreviewsBuilder {
            previews: Previews {
                base: base.clone(),
                edge,
                edge_name: "previews".into(),
                domain: domain.into(),
                routes: Vec::new(),
                lifetime: lifetime::Lifetime::default(),
                actor: None,
            },
        }
    }

    /// Starts describing the preview `name` of the base, with its overrides.
    pub fn preview(&self, name: PreviewName) -> PreviewBuilder<'_> {
        PreviewBuilder {
            previews: self,
            preview: Preview { name, images: BTreeMap::new(), env: Vec::new(), services: Vec::new(), seed: None },
        }
    }

    /// The edge environment's name.
    pub fn edge_name(&self) -> &str {
        &self.edge_name
    }

    /// The host names preview `name` answers on.
    pub fn hosts(&self, name: &str) -> Vec<String> {
        host_map(self.preview_routes(), name, &self.domain).1
    }

    /// The routes a preview serves, before their hosts are mapped: the builder's, or the base's.
    fn preview_routes(&self) -> &[Route] {
        if self.routes.is_empty() {
            self.base.ingress().map(Ingress::routes).unwrap_or_default()
        } else {
            &self.routes
        }
    }

    /// The URL scheme clients use: `https` once the edge issues certificates.
    fn scheme(&self) -> &'static str {
        if self.edge.tls.issues_certificates() {
            "https"
        } else {
            "http"
        }
    }

    /// The environment preview `preview` runs as, under `name` (its own or a disambiguated one).
    pub(crate) fn environment_of(
        &self,
        preview: &Preview,
        name: &str,
    ) -> Result<(Environment, Vec<String>), ValidationError> {
        let invalid = |reason: String| ValidationError::InvalidValue {
            owner: format!("preview `{name}`"),
            field: "preview",
            reason,
        };
        if name == self.edge_name || name == self.base.name() {
            return Err(invalid(format!("its name is the {}'s", if name == self.edge_name { "edge" } else { "base" })));
        }
        let mut b = crate::model::EnvironmentBuilder::derived(&self.base, name);
        let mut notes = Vec::new();
        for s in b.services_mut().iter_mut() {
            if s.name.starts_with(edge::PREVIEW_INGRESS) || s.name == edge::relay_name(name) {
                return Err(invalid(format!(
                    "service `{}` takes a name the preview's ingress or the edge's relays use",
                    s.name
                )));
            }
            for p in s.ports.iter_mut() {
                if let Publish::Fixed(port) = p.publish {
                    p.publish = Publish::Ephemeral;
                    notes.push(format!(
                        "{}: host port {port} is published on an ephemeral port (the base holds it)",
                        s.name
                    ));
                }
            }
        }
        for (service, image) in &preview.images {
            let s = b.services_mut().iter_mut().find(|s| &s.name == service).ok_or_else(|| {
                invalid(format!("an image is given for `{service}`, which is not a service of the base"))
            })?;
            *s = s.to_builder().image(image.clone()).build()?;
        }
        for (service, key, value) in &preview.env {
            let s = b.services_mut().iter_mut().find(|s| &s.name == service).ok_or_else(|| {
                invalid(format!("a variable is given for `{service}`, which is not a service of the base"))
            })?;
            *s = s.to_builder().env(key.clone(), value.clone()).build()?;
        }
        for s in &preview.services {
            b = b.replace(s.clone());
        }
        let (routes, _) = host_map(self.preview_routes(), name, &self.domain);
        if routes.is_empty() {
            return Err(invalid(
                "it has no route: give the base an ingress with routes, or PreviewsBuilder::route(..)".into(),
            ));
        }
        let ingress = self.edge.unpublished_like(edge::PREVIEW_INGRESS, routes)?;
        let mut env = b.ingress(ingress).lock_timeout(Duration::from_secs(600)).build()?;
        if let Some(a) = &self.actor {
            env.actor = Some(a.clone());
        }
        env.labels.insert(MARK_EDGE.into(), self.edge_name.clone());
        env.labels.insert(MARK_SOURCE.into(), preview.name.source_digest());
        Ok((env, notes))
    }
}

impl PreviewsBuilder {
    /// The edge environment's name (default `previews`): previews of different bases can share
    /// one project when their edges are named apart.
    pub fn edge_name(mut self, name: impl Into<String>) -> Self {
        self.previews.edge_name = name.into();
        self
    }

    /// A route every preview serves (its host is mapped as the base's are; without any, the
    /// preview serves the base ingress's routes).
    pub fn route(mut self, route: Route) -> Self {
        self.previews.routes.push(route);
        self
    }

    /// A preview is removed this long after it was first brought up.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.previews.lifetime.ttl = Some(ttl);
        self
    }

    /// A preview is removed this long after its last deploy.
    pub fn idle_expiry(mut self, idle: Duration) -> Self {
        self.previews.lifetime.idle = Some(idle);
        self
    }

    /// At most this many previews are alive: bringing up one more removes the oldest first.
    pub fn max_live(mut self, n: usize) -> Self {
        self.previews.lifetime.max_live = Some(n);
        self
    }

    /// Who deploys (a CI job, a bot): recorded in the previews' and the edge's locks and audit.
    pub fn actor(mut self, who: impl Into<String>) -> Self {
        self.previews.actor = Some(who.into());
        self
    }

    /// Validates the names, the domain and the limits.
    pub fn build(self) -> Result<Previews, ValidationError> {
        let p = self.previews;
        let invalid = |field: &'static str, reason: String| ValidationError::InvalidValue {
            owner: format!("previews of `{}`", p.base.qualified_name()),
            field,
            reason,
        };
        crate::model::name::check("environment", &p.edge_name)?;
        let domain_ok = !p.domain.is_empty()
            && p.domain.len() <= 200
            && p.domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !domain_ok {
            return Err(invalid("domain", format!("{:?} is not a lower-case domain name", p.domain)));
        }
        if p.lifetime.max_live == Some(0) {
            return Err(invalid("max_live", "at least one preview must be allowed".into()));
        }
        for (field, d) in [("ttl", p.lifetime.ttl), ("idle_expiry", p.lifetime.idle)] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(invalid(field, "must be greater than zero".into()));
            }
        }
        if p.edge.service().name().starts_with(edge::PREVIEW_INGRESS) {
            return Err(invalid("edge", format!("the edge's ingress may not be named {}", edge::PREVIEW_INGRESS)));
        }
        if !p.edge.routes().is_empty() {
            return Err(invalid("edge", "the edge's routes are the previews': give it none".into()));
        }
        // A preview must be describable: check one now, so a mistake shows before any target.
        let probe = p.preview(PreviewName::named("hm-check")).preview;
        p.environment_of(&probe, "hm-check")?;
        Ok(p)
    }
}

/// One preview to bring up: what it shows and its overrides ([`Previews::preview`]).
#[derive(Clone, Debug)]
pub struct Preview {
    name: PreviewName,
    images: BTreeMap<String, String>,
    env: Vec<(String, String, String)>,
    services: Vec<crate::model::Service>,
    #[cfg(feature = "backup")]
    seed: Option<Seed>,
    #[cfg(not(feature = "backup"))]
    seed: Option<std::convert::Infallible>,
}

impl Preview {
    /// What it shows.
    pub fn name(&self) -> &PreviewName {
        &self.name
    }
}

/// Builder for [`Preview`].
#[derive(Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct PreviewBuilder<'a> {
    previews: &'a Previews,
    preview: Preview,
}

impl PreviewBuilder<'_> {
    /// Runs `service` from `image` (the build of the branch) instead of the base's.
    pub fn image(mut self, service: impl Into<String>, image: impl Into<String>) -> Self {
        self.preview.images.insert(service.into(), image.into());
        self
    }

    /// Sets an environment variable of `service` in this preview.
    pub fn env(mut self, service: impl Into<String>, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.preview.env.push((service.into(), key.into(), value.into()));
        self
    }

    /// Adds a service, or replaces the base's of the same name (a job that loads fixtures).
    pub fn service(mut self, service: crate::model::Service) -> Self {
        self.preview.services.push(service);
        self
    }

    /// Seeds the preview's database when it is first brought up (feature `backup`).
    #[cfg(feature = "backup")]
    pub fn seed(mut self, seed: Seed) -> Self {
        self.preview.seed = Some(seed);
        self
    }

    /// Validates the preview as an environment.
    pub fn build(self) -> Result<Preview, ValidationError> {
        let (env, _) = self.previews.environment_of(&self.preview, self.preview.name.name())?;
        #[cfg(feature = "backup")]
        if let Some(seed) = &self.preview.seed {
            seed.check(&env)?;
        }
        #[cfg(not(feature = "backup"))]
        let _ = env;
        Ok(self.preview)
    }
}

/// A live preview, as found on the target ([`Previews::list`]). Serializes with times as RFC 3339.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreviewInfo {
    /// Its name (its environment's).
    pub name: String,
    /// The host names it answers on.
    pub hosts: Vec<String>,
    /// When it was first brought up.
    #[serde(serialize_with = "crate::json::rfc3339")]
    pub created: SystemTime,
    /// When it was last deployed to (its newest audit entry).
    #[serde(serialize_with = "crate::json::rfc3339")]
    pub last_deploy: SystemTime,
    /// When it expires, by the time to live or the idle expiry, if either is set.
    #[serde(serialize_with = "crate::json::rfc3339_opt")]
    pub expires: Option<SystemTime>,
    /// The digest of what it shows ([`PreviewName::source_digest`]).
    pub source_digest: String,
}

/// The routes with their hosts mapped to the preview's, and those hosts (first the main one).
fn host_map(routes: &[Route], name: &str, domain: &str) -> (Vec<Route>, Vec<String>) {
    let main = format!("{name}.{domain}");
    let mut mapped: Vec<(String, String)> = Vec::new();
    let mut hosts = vec![main.clone()];
    let mut map = |h: &str| -> String {
        if let Some((_, m)) = mapped.iter().find(|(from, _)| from == h) {
            return m.clone();
        }
        let to = if mapped.is_empty() {
            main.clone()
        } else {
            let label: String = h
                .trim_start_matches("*.")
                .split('.')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(16)
                .collect::<String>()
                .to_ascii_lowercase();
            let mut candidate = format!("{name}-{}.{domain}", label.trim_matches('-'));
            let mut n = 2;
            while hosts.contains(&candidate) {
                candidate = format!("{name}-{}-{n}.{domain}", label.trim_matches('-'));
                n += 1;
            }
            candidate
        };
        mapped.push((h.to_string(), to.clone()));
        if !hosts.contains(&to) {
            hosts.push(to.clone());
        }
        to
    };
    let routes = routes
        .iter()
        .map(|r| {
            let mut out = Route::to(r.service.clone(), r.port);
            out.path_prefix = r.path_prefix.clone();
            if r.hosts.is_empty() {
                out.hosts = vec![main.clone()];
            } else {
                let mut hs: Vec<String> = r.hosts.iter().map(|h| map(h)).collect();
                hs.dedup();
                out.hosts = hs;
            }
            out
        })
        .collect();
    (routes, hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_the_preview_keeping_paths() {
        let routes = [
            Route::to("web", 3000).host("shop.example.com"),
            Route::to("api", 8080).host("shop.example.com").path_prefix("/api"),
            Route::to("admin", 80).host("admin.shop.example.com"),
            Route::to("admin2", 80).host("admin.other.example.com"),
        ];
        let (mapped, hosts) = host_map(&routes, "pr-7", "preview.test");
        assert_eq!(hosts, ["pr-7.preview.test", "pr-7-admin.preview.test", "pr-7-admin-2.preview.test"]);
        assert_eq!(mapped[0].hosts, ["pr-7.preview.test"]);
        assert_eq!(mapped[1].path_prefix.as_deref(), Some("/api"));
        assert_eq!(mapped[2].hosts, ["pr-7-admin.preview.test"]);
        assert_eq!(mapped[3].hosts, ["pr-7-admin-2.preview.test"]);
        let (mapped, hosts) = host_map(&[Route::to("web", 80)], "b", "x.test");
        assert_eq!((mapped[0].hosts.clone(), hosts), (vec!["b.x.test".to_string()], vec!["b.x.test".to_string()]));
    }
}
