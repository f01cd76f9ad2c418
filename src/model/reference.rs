//! [`ServiceRef`]: a typed reference from one service's environment to another service's endpoint.

use serde::{Deserialize, Serialize};

/// Where another service listens, as a value for an environment variable, resolved at apply time
/// from where the two services run.
///
/// On one engine, or when both run on the same host, `{host}` is the service's name and `{port}`
/// its container port (they share the environment's network). Across hosts, `{host}` is the other
/// host's address and `{port}` the port it publishes (which must then be a fixed host port).
///
/// ```
/// use harbormaster::{Port, Service, ServiceRef};
/// let api = Service::builder("api")
///     .image("local/api:2")
///     .env_ref("DATABASE_URL", ServiceRef::to("db", 5432).format("postgres://app@{host}:{port}/shop"))
///     .env_ref("REDIS_ADDR", ServiceRef::to("cache", 6379)) // "{host}:{port}"
///     .build()?;
/// # Ok::<_, harbormaster::ValidationError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    pub(crate) service: String,
    pub(crate) port: u16,
    pub(crate) format: String,
}

impl ServiceRef {
    /// A reference to container port `port` of `service`, formatted `{host}:{port}`.
    pub fn to(service: impl Into<String>, port: u16) -> Self {
        ServiceRef { service: service.into(), port, format: "{host}:{port}".into() }
    }

    /// The value's format: `{host}` and `{port}` are replaced (for example
    /// `postgres://app@{host}:{port}/shop`).
    pub fn format(mut self, format: impl Into<String>) -> Self {
        self.format = format.into();
        self
    }

    /// The service referred to.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Its container port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The value for `host` and `port`.
    pub(crate) fn render(&self, host: &str, port: u16) -> String {
        self.format.replace("{host}", host).replace("{port}", &port.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceRef;

    #[test]
    fn renders_host_and_port() {
        let r = ServiceRef::to("db", 5432).format("postgres://app@{host}:{port}/shop");
        assert_eq!(r.render("db", 5432), "postgres://app@db:5432/shop");
        assert_eq!(ServiceRef::to("db", 5432).render("10.0.0.3", 15432), "10.0.0.3:15432");
    }
}
