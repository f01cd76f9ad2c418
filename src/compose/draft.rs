//! One service as it is being read: what its keys say so far ([`Draft`]) and the mapping in
//! progress ([`Svc`]) the key readers (`build.rs`, `ports.rs`, `mounts.rs`, `health.rs`,
//! `deploy.rs`, `options.rs`) fill in. Below them and `service.rs`, which drives them.

use std::collections::BTreeMap;

use super::context::Context;
use super::declared::Project;
use crate::model::{
    Build, Condition, ContainerOptions, HealthCheck, Port, PullPolicy, Resources, RestartPolicy, Rollout, Volume,
};

/// What a service's keys say, gathered before the builder is made.
pub(crate) struct Draft {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub env_files: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub exposed: Vec<Port>,
    pub volumes: Vec<Volume>,
    /// Secrets and configs written into the containers.
    pub files: Vec<crate::model::ContainerFile>,
    pub health: Option<HealthCheck>,
    pub depends: Vec<(String, Condition)>,
    pub replicas: Option<(u32, super::yaml::At, &'static str)>,
    /// `deploy.mode: global`, where it was said.
    pub global: Option<super::yaml::At>,
    pub restart: Option<RestartPolicy>,
    pub restart_policy: Option<RestartPolicy>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub stop_grace: Option<std::time::Duration>,
    pub pull: Option<PullPolicy>,
    pub options: ContainerOptions,
    pub resources: Resources,
    pub rollout: Option<Rollout>,
    pub aliases: Vec<String>,
    pub placement: Vec<String>,
    /// External networks joined.
    pub networks: Vec<String>,
    /// The services whose mounts it takes (`volumes_from`), and whether read-only.
    pub volumes_from: Vec<(String, Option<bool>, super::yaml::At, String)>,
}

/// One service's mapping, as it is read.
pub(crate) struct Svc<'a> {
    pub ctx: &'a mut Context,
    pub project: &'a Project,
    pub name: &'a str,
    pub job: bool,
    pub d: Draft,
}

impl Svc<'_> {
    /// `services.NAME.key`.
    pub(crate) fn key(&self, k: &str) -> String {
        format!("services.{}.{k}", self.name)
    }
}
