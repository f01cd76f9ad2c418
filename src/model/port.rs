//! Container ports and how they are published on the host.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A port a service listens on, and whether the host publishes it.
///
/// Other services of the environment always reach it by service name (`http://api:8080`);
/// publishing makes it reachable from the host too. What a published port binds to:
///
/// | publishing | binds to, unless [`on_host_ip`](Self::on_host_ip) says otherwise |
/// |---|---|
/// | not published ([`Port::tcp`]) | nothing: the environment's network only |
/// | [`publish_ephemeral`](Self::publish_ephemeral) | a local engine: `127.0.0.1` only (a test database is not on the network); an [`SshHost`](crate::SshHost): the host's address (other hosts reach it there); another remote engine: every address |
/// | [`publish`](Self::publish) (a fixed port) | every address (`0.0.0.0`), as `docker run -p 80:80` does |
///
/// ```
/// use harbormaster::Port;
/// let internal = Port::tcp(5432);                  // reachable inside the environment only
/// let fixed = Port::tcp(80).publish(8080);         // host port 8080
/// let test = Port::tcp(8080).publish_ephemeral();  // a free host port chosen by the engine
/// # let _ = (internal, fixed, test);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub(crate) container: u16,
    pub(crate) protocol: Protocol,
    pub(crate) publish: Publish,
    pub(crate) host_ip: Option<IpAddr>,
}

/// Transport protocol of a [`Port`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// How a [`Port`] is published on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Publish {
    /// Not published: reachable inside the environment only.
    No,
    /// A host port chosen by the engine (each replica gets its own).
    Ephemeral,
    /// This host port.
    Fixed(u16),
}

impl Port {
    /// A TCP port, not published.
    pub fn tcp(port: u16) -> Self {
        Port { container: port, protocol: Protocol::Tcp, publish: Publish::No, host_ip: None }
    }

    /// A UDP port, not published.
    pub fn udp(port: u16) -> Self {
        Port { container: port, protocol: Protocol::Udp, publish: Publish::No, host_ip: None }
    }

    /// Publishes it on this host port.
    pub fn publish(mut self, host_port: u16) -> Self {
        self.publish = Publish::Fixed(host_port);
        self
    }

    /// Publishes it on a free host port chosen by the engine; read it back with
    /// [`Deployment::endpoint`](crate::Deployment::endpoint). On a local engine it binds to
    /// `127.0.0.1` only (see the table above).
    pub fn publish_ephemeral(mut self) -> Self {
        self.publish = Publish::Ephemeral;
        self
    }

    /// Binds the published port on this host address only (`127.0.0.1`, a private address), or
    /// on every address with `0.0.0.0`.
    pub fn on_host_ip(mut self, ip: IpAddr) -> Self {
        self.host_ip = Some(ip);
        self
    }

    /// The host address given with [`on_host_ip`](Self::on_host_ip), if any (otherwise the
    /// defaults of the table above apply).
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host_ip
    }

    /// The port inside the container.
    pub fn container_port(&self) -> u16 {
        self.container
    }

    /// How it is published.
    pub fn publishing(&self) -> Publish {
        self.publish
    }

    /// Its protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}
