//! The optional multi-host topology: a target that places each instance on one of several named
//! hosts (by the roles of [`EnvironmentBuilder::hosts`](crate::EnvironmentBuilder::hosts)).

/// One host of a target that spreads an environment over several hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// Its name, as roles map to it ([`EnvironmentBuilder::hosts`](crate::EnvironmentBuilder::hosts)).
    pub name: String,
    /// The address at which its published ports are reached, by the library and by the other hosts.
    pub address: String,
}

/// A target with several hosts; [`InstanceSpec::host`](super::InstanceSpec::host) says where each
/// instance goes.
pub trait Topology: Send + Sync {
    /// The hosts instances are placed on, by name.
    fn hosts(&self) -> Vec<HostInfo>;
}
