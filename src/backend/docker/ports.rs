//! Host ports a service would publish that something else holds already, found before anything
//! changes (the plan's preflight): another container publishing the same port and address, or,
//! on a local engine, a process of the host listening on it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::DockerBackend;
use crate::backend::{label, InstanceSpec};
use crate::error::{Error, Result};
use crate::model::{Protocol, Publish};

/// Refuses `spec` when one of its fixed host ports is held by a container of another environment
/// (or none), or by a process on a local engine's host.
pub(super) async fn check(d: &DockerBackend, spec: &InstanceSpec) -> Result<()> {
    let fixed: Vec<(u16, Protocol, Option<IpAddr>)> = spec
        .ports
        .iter()
        .filter_map(|p| match p.publish {
            Publish::Fixed(host) if host != 0 => Some((host, p.protocol(), p.host_ip())),
            _ => None,
        })
        .collect();
    if fixed.is_empty() {
        return Ok(());
    }
    let options = ListContainersOptionsBuilder::new().all(false).build();
    let running = d.call("list containers", &spec.scope.qualified(), d.docker.list_containers(Some(options))).await?;
    // The environment's own containers: the service's instances (replaced, freeing the port) or
    // a service no longer described (removed first). Two described services cannot both publish
    // a port: building the environment refuses that.
    let own = |c: &bollard::models::ContainerSummary| {
        let label = |k| c.labels.as_ref().and_then(|l| l.get(k));
        label(label::PROJECT) == Some(&spec.scope.project) && label(label::ENVIRONMENT) == Some(&spec.scope.environment)
    };
    for (host_port, protocol, ip) in &fixed {
        let holders = running.iter().filter(|c| {
            c.ports.iter().flatten().any(|p| {
                p.public_port == Some(*host_port)
                    && p.typ.is_some_and(|t| t.to_string() == protocol.as_str())
                    && overlaps(p.ip.as_deref(), *ip)
            })
        });
        let (ours, others): (Vec<_>, Vec<_>) = holders.partition(|c| own(c));
        if let Some(c) = others.first() {
            let name = c.names.iter().flatten().next().map(|n| n.trim_start_matches('/').to_string());
            let holder = format!("container {}", name.unwrap_or_else(|| c.id.clone().unwrap_or_default()));
            return Err(in_use(spec, *host_port, *protocol, holder, &d.endpoint));
        }
        // A process of this host: only a local engine's ports are this process's to try.
        if ours.is_empty() && d.on_this_host && bound_here(*host_port, *protocol, *ip) {
            return Err(in_use(spec, *host_port, *protocol, "a process on this host".into(), &d.endpoint));
        }
    }
    Ok(())
}

fn in_use(spec: &InstanceSpec, port: u16, protocol: Protocol, holder: String, endpoint: &str) -> Error {
    Error::PortInUse {
        service: spec.service.clone(),
        port,
        protocol: protocol.as_str(),
        holder,
        target: endpoint.into(),
    }
}

/// Whether a binding on `bound` (the engine's text: empty, `0.0.0.0`, `::` or an address) and one
/// wanted on `wanted` (none: every address) can collide.
fn overlaps(bound: Option<&str>, wanted: Option<IpAddr>) -> bool {
    let bound: Option<IpAddr> = bound.and_then(|b| b.parse().ok()).filter(|b: &IpAddr| !b.is_unspecified());
    match (bound, wanted.filter(|w| !w.is_unspecified())) {
        (Some(b), Some(w)) => b == w,
        _ => true,
    }
}

/// Whether binding the port here fails because something listens on it (any other failure, such
/// as a privileged port for an unprivileged process, says nothing).
fn bound_here(port: u16, protocol: Protocol, ip: Option<IpAddr>) -> bool {
    let addr = SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    let result = match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
        Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_collide_unless_both_are_distinct_and_specific() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(overlaps(Some("0.0.0.0"), Some(lo)));
        assert!(overlaps(Some("127.0.0.1"), None));
        assert!(overlaps(None, None));
        assert!(!overlaps(Some("127.0.0.2"), Some(lo)));
        assert!(overlaps(Some("::"), Some(lo)));
    }

    #[test]
    fn ports_published_on_an_address_of_another_machine_are_not_checked_here() {
        assert!(super::super::address_is_here("127.0.0.1"));
        assert!(super::super::address_is_here("localhost"), "a name is taken as this machine's");
        assert!(!super::super::address_is_here("192.0.2.77"), "TEST-NET-1 is nobody's address here");
    }

    #[test]
    fn a_listening_socket_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(bound_here(port, Protocol::Tcp, Some("127.0.0.1".parse().unwrap())));
        drop(l);
        assert!(!bound_here(port, Protocol::Tcp, Some("127.0.0.1".parse().unwrap())));
    }
}
