//! Where each service runs on a backend with several hosts, and what its references to other
//! services resolve to from there. Pure functions of the description and the backend's hosts.

use std::collections::{BTreeMap, HashMap};

use crate::backend::HostInfo;
use crate::error::{Error, Result};
use crate::model::{Environment, Publish, Service};

/// The hosts `svc` is placed on: its role's hosts. Empty on a single-host backend.
pub(crate) fn hosts_of(env: &Environment, svc: &Service, hosts: &[HostInfo]) -> Result<Vec<String>> {
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let names = || hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
    let placement = |reason: String| Error::Placement { service: svc.name.clone(), reason };
    let mapped = svc.role.as_ref().and_then(|r| env.roles.get(r));
    let Some(list) = mapped else {
        // A one-host backend needs no roles.
        if let [only] = hosts {
            return Ok(vec![only.name.clone()]);
        }
        return Err(placement(match &svc.role {
            None => format!(
                "the backend has {} hosts ({}) and the service has no role; give it ServiceBuilder::role and map \
                 the role with EnvironmentBuilder::hosts",
                hosts.len(),
                names()
            ),
            Some(r) => format!("its role `{r}` is mapped to no host; map it with EnvironmentBuilder::hosts"),
        }));
    };
    for h in list {
        if !hosts.iter().any(|k| &k.name == h) {
            return Err(placement(format!(
                "its role `{}` maps to host `{h}`, which the backend does not have (hosts: {})",
                svc.role.as_deref().unwrap_or_default(),
                names()
            )));
        }
    }
    Ok(list.clone())
}

/// Every service's hosts, by name.
/// For a target that places tasks itself: the hosts each service's role allows (empty:
/// anywhere); a role must map to hosts the target has.
pub(crate) fn allowed(env: &Environment, hosts: &[HostInfo]) -> Result<HashMap<String, Vec<String>>> {
    let mut out = HashMap::new();
    for s in &env.services {
        let Some(role) = s.role_name() else { continue };
        let mapped = env.roles().get(role).cloned().unwrap_or_default();
        if let Some(unknown) = mapped.iter().find(|h| !hosts.iter().any(|x| &x.name == *h)) {
            return Err(Error::Placement {
                service: s.name.clone(),
                reason: format!(
                    "its role `{role}` maps to host `{unknown}`, which the target does not have (it has {})",
                    hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        out.insert(s.name.clone(), mapped);
    }
    Ok(out)
}

pub(crate) fn place_all(env: &Environment, hosts: &[HostInfo]) -> Result<HashMap<String, Vec<String>>> {
    let placed: HashMap<String, Vec<String>> =
        env.services.iter().map(|s| Ok((s.name.clone(), hosts_of(env, s, hosts)?))).collect::<Result<_>>()?;
    for s in &env.services {
        let fixed = s.ports.iter().find_map(|p| match p.publishing() {
            Publish::Fixed(port) => Some(port),
            _ => None,
        });
        let mut distinct = placed.get(&s.name).cloned().unwrap_or_default();
        distinct.sort();
        distinct.dedup();
        if let Some(port) = fixed.filter(|_| s.replicas as usize > distinct.len().max(1)) {
            return Err(Error::Placement {
                service: s.name.clone(),
                reason: format!(
                    "{} replicas publish host port {port}, and they would share {}; one host binds a port once, \
                     so map its role to at least {} hosts or publish an ephemeral port",
                    s.replicas,
                    list(&distinct),
                    s.replicas
                ),
            });
        }
    }
    check_ports_per_host(env, &placed)?;
    if let Some(ingress) = env.ingress() {
        let router = placed.get(ingress.router().name()).cloned().unwrap_or_default();
        for route in ingress.routes() {
            let target = placed.get(&route.service).cloned().unwrap_or_default();
            let Some(svc) = env.service(&route.service) else { continue };
            // A router dials the instances on its own host by name, the others at their host's
            // address and published port.
            let one_host = same_hosts(&router, &target) && distinct(&router) <= 1;
            let published = svc
                .ports
                .iter()
                .any(|p| p.container == route.port && p.publishing() != Publish::No && p.protocol.as_str() == "tcp");
            if !one_host && !published {
                return Err(Error::Placement {
                    service: route.service.clone(),
                    reason: format!(
                        "the ingress on {} routes to its port {}, and it runs on {}; across hosts the ingress \
                         reaches it at its host's published port, so publish port {} (Port::publish_ephemeral \
                         will do), or give it the ingress's role",
                        list(&router),
                        route.port,
                        list(&target),
                        route.port
                    ),
                });
            }
        }
    }
    Ok(placed)
}

/// No two services publish the same host port on one host (on a single engine, anywhere): roles
/// that map to different hosts in the description may still share a host of the backend, or the
/// backend may have one engine.
fn check_ports_per_host(env: &Environment, placed: &HashMap<String, Vec<String>>) -> Result<()> {
    let mut used: HashMap<(String, u16, &'static str), &str> = HashMap::new();
    for s in &env.services {
        let hosts = placed.get(&s.name).filter(|h| !h.is_empty()).cloned().unwrap_or_else(|| vec![String::new()]);
        for p in &s.ports {
            let Publish::Fixed(port) = p.publishing() else { continue };
            let mut distinct = hosts.clone();
            distinct.sort();
            distinct.dedup();
            for h in distinct {
                if let Some(first) = used.insert((h.clone(), port, p.protocol.as_str()), &s.name) {
                    let on = if h.is_empty() { "the one engine".to_string() } else { format!("host {h}") };
                    return Err(Error::Placement {
                        service: s.name.clone(),
                        reason: format!(
                            "it publishes host port {port}, and so does `{first}`, on {on}; give them roles on \
                             different hosts or different ports"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

fn distinct(hosts: &[String]) -> usize {
    let mut h: Vec<&String> = hosts.iter().collect();
    h.sort();
    h.dedup();
    h.len()
}

fn same_hosts(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

fn list(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "the one engine".into()
    } else {
        format!("host(s) {}", hosts.join(", "))
    }
}

/// The values of `svc`'s references to other services, from where it runs: the service's name and
/// container port on the same host (or one engine), the other host's address and fixed published
/// port across hosts.
pub(crate) fn resolve_refs(
    env: &Environment,
    svc: &Service,
    placed: &HashMap<String, Vec<String>>,
    hosts: &[HostInfo],
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let none = Vec::new();
    let mine = placed.get(&svc.name).unwrap_or(&none);
    for (key, r) in &svc.env_refs {
        let placement = |reason: String| Error::Placement { service: svc.name.clone(), reason };
        let target = env.service(&r.service).ok_or_else(|| {
            placement(format!("{key} refers to `{}`, which is not a service of the environment", r.service))
        })?;
        let theirs = placed.get(&target.name).unwrap_or(&none);
        let local = theirs.is_empty() || (mine.len() == 1 && theirs.first() == mine.first());
        if local {
            out.insert(key.clone(), r.render(&target.name, r.port));
            continue;
        }
        let Some(first) = theirs.first() else { continue };
        let published = target.ports.iter().find(|p| p.container_port() == r.port).map(|p| p.publishing());
        let Some(Publish::Fixed(host_port)) = published else {
            return Err(placement(format!(
                "{key} refers to `{}` port {}, which runs on host {first} while `{}` runs on {}; publish that port at \
                 a fixed host port (Port::tcp({}).publish(..)) so that it can be reached across hosts",
                target.name,
                r.port,
                svc.name,
                list(mine),
                r.port
            )));
        };
        let address = hosts.iter().find(|h| &h.name == first).map(|h| h.address.as_str()).unwrap_or(first.as_str());
        out.insert(key.clone(), r.render(address, host_port));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Port, ServiceRef};

    fn fleet() -> Vec<HostInfo> {
        ["a", "b"].iter().map(|n| HostInfo { name: n.to_string(), address: format!("10.0.0.{}", n.len()) }).collect()
    }

    fn env(db_port: Port) -> Environment {
        let db = Service::builder("db").image("x").role("db").port(db_port).build().unwrap();
        let api = Service::builder("api")
            .image("x")
            .role("app")
            .env_ref("DB", ServiceRef::to("db", 5432).format("pg://{host}:{port}/x"))
            .build()
            .unwrap();
        Environment::builder("p", "e").hosts("app", ["a"]).hosts("db", ["b"]).service(db).service(api).build().unwrap()
    }

    #[test]
    fn references_resolve_by_name_on_one_engine_and_by_address_across_hosts() {
        let e = env(Port::tcp(5432).publish(15432));
        let api = e.service("api").unwrap();
        // One engine: names.
        let placed = place_all(&e, &[]).unwrap();
        assert_eq!(resolve_refs(&e, api, &placed, &[]).unwrap()["DB"], "pg://db:5432/x");
        // Two hosts: the db host's address and published port.
        let placed = place_all(&e, &fleet()).unwrap();
        assert_eq!(placed["api"], ["a"]);
        assert_eq!(resolve_refs(&e, api, &placed, &fleet()).unwrap()["DB"], "pg://10.0.0.1:15432/x");
    }

    #[test]
    fn a_cross_host_reference_needs_a_fixed_published_port() {
        let e = env(Port::tcp(5432));
        let placed = place_all(&e, &fleet()).unwrap();
        let err = resolve_refs(&e, e.service("api").unwrap(), &placed, &fleet()).unwrap_err().to_string();
        assert!(err.contains("cannot place `api`") && err.contains("fixed host port"), "{err}");
    }

    #[test]
    fn roles_must_map_to_hosts_the_backend_has() {
        let svc = Service::builder("web").image("x").role("web").build().unwrap();
        let e = Environment::builder("p", "e").hosts("web", ["a", "zz"]).service(svc).build().unwrap();
        let err = place_all(&e, &fleet()).unwrap_err().to_string();
        assert!(err.contains("host `zz`") && err.contains("hosts: a, b"), "{err}");
        // Without roles, a one-host backend places everything on its host; two hosts need roles.
        let bare = Environment::builder("p", "e").service(Service::builder("w").image("x").build().unwrap()).build();
        let bare = bare.unwrap();
        assert_eq!(place_all(&bare, &fleet()[..1]).unwrap()["w"], ["a"]);
        assert!(place_all(&bare, &fleet()).is_err());
    }

    #[test]
    fn replicas_with_a_fixed_host_port_need_a_host_each() {
        let web = |n| Service::builder("web").image("x").role("web").replicas(n).port(Port::tcp(80).publish(8080));
        let e =
            Environment::builder("p", "e").hosts("web", ["a", "b"]).service(web(2).build().unwrap()).build().unwrap();
        assert!(place_all(&e, &fleet()).is_ok());
        let e =
            Environment::builder("p", "e").hosts("web", ["a", "b"]).service(web(3).build().unwrap()).build().unwrap();
        let err = place_all(&e, &fleet()).unwrap_err().to_string();
        assert!(err.contains("3 replicas publish host port 8080"), "{err}");
        // On one engine, two replicas cannot share the port either.
        let e = Environment::builder("p", "e").service(web(2).build().unwrap()).build().unwrap();
        assert!(place_all(&e, &[]).is_err());
    }

    #[test]
    fn an_ingress_reaches_other_hosts_through_published_ports() {
        let env = |api_hosts: &[&str], port: Port| {
            let ingress = crate::Ingress::builder()
                .image("caddy")
                .role("gateway")
                .route(crate::Route::to("api", 8080))
                .build()
                .unwrap();
            let api = Service::builder("api").image("x").role("app").port(port).build().unwrap();
            Environment::builder("p", "e")
                .hosts("gateway", ["a"])
                .hosts("app", api_hosts.iter().copied())
                .ingress(ingress)
                .service(api)
                .build()
                .unwrap()
        };
        // The same one host: by name, nothing published.
        assert!(place_all(&env(&["a"], Port::tcp(8080)), &fleet()).is_ok());
        // Another host: its port must be published.
        let err = place_all(&env(&["b"], Port::tcp(8080)), &fleet()).unwrap_err().to_string();
        assert!(err.contains("publish port 8080"), "{err}");
        assert!(place_all(&env(&["a", "b"], Port::tcp(8080).publish_ephemeral()), &fleet()).is_ok());
        assert!(place_all(&env(&["b"], Port::tcp(8080).publish(18080)), &fleet()).is_ok());
    }

    #[test]
    fn services_share_a_host_port_only_across_hosts() {
        let on = |name: &str, role: &str| {
            Service::builder(name).image("x").role(role).port(Port::tcp(80).publish(8080)).build().unwrap()
        };
        let e = Environment::builder("p", "e")
            .hosts("web", ["a"])
            .hosts("api", ["b"])
            .service(on("web", "web"))
            .service(on("api", "api"))
            .build()
            .unwrap();
        assert!(place_all(&e, &fleet()).is_ok(), "a and b each bind 8080 once");
        // The same description on one engine binds 8080 twice.
        let err = place_all(&e, &[]).unwrap_err().to_string();
        assert!(err.contains("host port 8080") && err.contains("the one engine"), "{err}");
    }
}
