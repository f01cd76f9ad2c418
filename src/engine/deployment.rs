//! [`Deployment`]: what an apply leaves running, and where to reach it.

use crate::events::RolloutOutcome;
use std::collections::BTreeMap;
use std::fmt;

use crate::backend::Instance;
use crate::error::{Error, Result};
use crate::model::Environment;

/// The running instances after an apply, by service, with their published endpoints.
///
/// Serializes (the [JSON shape](crate::json)) as `{"environment": "shop-staging", "services":
/// {"api": {"outcome": {"kind": "succeeded"}, "instances": [{"name": "…", "slot": 0, "state":
/// "running", "host": null, "endpoints": [{"container_port": 8080, "protocol": "tcp", "host":
/// "127.0.0.1", "port": 49153}]}]}}, "ingress": {"host": "127.0.0.1", "port": 80}}`.
#[derive(Clone, Debug)]
pub struct Deployment {
    environment: String,
    host: String,
    services: BTreeMap<String, Vec<Instance>>,
    outcomes: BTreeMap<String, RolloutOutcome>,
    ingress: Option<(String, u16)>,
}

/// A published address of a service: host and port. Serializes as `{"host": "127.0.0.1", "port": 49153}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Host port.
    pub port: u16,
}

impl Endpoint {
    /// `http://host:port`.
    pub fn http_url(&self) -> String {
        format!("http://{self}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl serde::Serialize for Deployment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(serde::Serialize)]
        struct Published<'a> {
            container_port: u16,
            protocol: &'a str,
            host: String,
            port: u16,
        }
        #[derive(serde::Serialize)]
        struct Running<'a> {
            name: &'a str,
            slot: u32,
            state: crate::backend::InstanceState,
            host: Option<&'a str>,
            endpoints: Vec<Published<'a>>,
        }
        #[derive(serde::Serialize)]
        struct Service<'a> {
            outcome: Option<&'a RolloutOutcome>,
            instances: Vec<Running<'a>>,
        }
        let services: BTreeMap<&str, Service<'_>> = self
            .services
            .iter()
            .map(|(name, list)| {
                let instances = list
                    .iter()
                    .map(|i| Running {
                        name: &i.name,
                        slot: i.slot,
                        state: i.state,
                        host: i.host.as_deref(),
                        endpoints: i
                            .published
                            .iter()
                            .map(|p| Published {
                                container_port: p.container_port,
                                protocol: &p.protocol,
                                host: self.reachable(&p.host_ip),
                                port: p.host_port,
                            })
                            .collect(),
                    })
                    .collect();
                (name.as_str(), Service { outcome: self.outcomes.get(name), instances })
            })
            .collect();
        let mut o = s.serialize_struct("Deployment", 3)?;
        o.serialize_field("environment", &self.environment)?;
        o.serialize_field("services", &services)?;
        o.serialize_field("ingress", &self.ingress_endpoint())?;
        o.end()
    }
}

impl Deployment {
    /// The address a binding on `host_ip` is reached at: the target's host for a wildcard.
    fn reachable(&self, host_ip: &str) -> String {
        match host_ip {
            "" | "0.0.0.0" | "::" => self.host.clone(),
            ip => ip.to_string(),
        }
    }

    pub(crate) fn new(
        env: &Environment,
        host: String,
        instances: Vec<Instance>,
        outcomes: BTreeMap<String, RolloutOutcome>,
    ) -> Self {
        let mut services: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for i in instances {
            if env.service(&i.service).is_some() {
                services.entry(i.service.clone()).or_default().push(i);
            }
        }
        let ingress = env.ingress().map(|i| (i.service().name().to_string(), i.http_port()));
        Deployment { environment: env.qualified_name(), host, services, outcomes, ingress }
    }

    /// How the rollout of `service` ended in this operation: [`RolloutOutcome::Succeeded`],
    /// [`RolloutOutcome::Unchanged`] or [`RolloutOutcome::AwaitingPromotion`] (a failed, paused or
    /// rolled-back rollout is an error of the apply).
    pub fn outcome(&self, service: &str) -> Option<&RolloutOutcome> {
        self.outcomes.get(service)
    }

    /// The endpoint of the ingress's plain-HTTP port, if the environment has an ingress publishing it.
    pub fn ingress_endpoint(&self) -> Option<Endpoint> {
        let (name, port) = self.ingress.as_ref()?;
        self.endpoint(name, *port).ok()
    }

    /// `project-environment`.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The instances of a service (jobs: their last run), ordered by slot.
    pub fn instances(&self, service: &str) -> &[Instance] {
        self.services.get(service).map(Vec::as_slice).unwrap_or_default()
    }

    /// Where the first running instance of `service` publishes `container_port`.
    pub fn endpoint(&self, service: &str, container_port: u16) -> Result<Endpoint> {
        self.endpoints(service, container_port)?
            .into_iter()
            .next()
            .ok_or(Error::NoEndpoint { service: service.to_string(), port: container_port })
    }

    /// Where each running instance of `service` publishes `container_port`, by slot.
    pub fn endpoints(&self, service: &str, container_port: u16) -> Result<Vec<Endpoint>> {
        let instances = self.services.get(service).ok_or_else(|| Error::UnknownService {
            environment: self.environment.clone(),
            service: service.to_string(),
        })?;
        Ok(instances
            .iter()
            .filter(|i| i.is_running())
            .filter_map(|i| {
                let p = i.published.iter().find(|p| p.container_port == container_port && p.protocol == "tcp")?;
                Some(Endpoint { host: self.reachable(&p.host_ip), port: p.host_port })
            })
            .collect())
    }
}
