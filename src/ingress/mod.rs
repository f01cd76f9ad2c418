//! The ingress: Caddy as the environment's reverse proxy, configured live through its admin API.
//!
//! - `config.rs`: renders Caddy's JSON configuration from the [`Ingress`](crate::Ingress) routes and the
//!   instances in rotation, with weights for canaries. A pure function, unit-tested.
//! - `engine/traffic.rs` pushes it: the file is written into each router container and loaded with
//!   `caddy reload`, which talks to the admin API on a Unix socket in the container (the admin API
//!   is never exposed on a network). Caddy swaps configurations without closing listeners, and
//!   requests in flight on an upstream that left finish on the old configuration. A front is never
//!   reloaded: a new front configuration replaces it start-first on the same ports (see
//!   [`Ingress`](crate::Ingress)), and the old one is drained first (`Connection: close`).
//! - [`caddy_build_context`]: packages the host's `caddy` binary into a `FROM scratch` image context,
//!   for machines that cannot pull `caddy:2`.

pub(crate) mod config;
mod context;

pub use context::caddy_build_context;
