//! [`Limit`]: what a target says it cannot honour of a description, or honours differently,
//! before anything changes ([`Backend::limits`](super::Backend::limits)).

use std::fmt;

/// Something of a service's description that a target handles differently from what the
/// description says, or not at all ([`Backend::limits`](super::Backend::limits));
/// [`Plan::limits`](crate::Plan::limits) lists them before anything changes, and an apply
/// refuses to start while any is `refused`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Limit {
    /// The service.
    pub service: String,
    /// What, and what happens instead (or what to change).
    pub what: String,
    /// `true`: the description cannot be honoured; apply refuses. `false`: it is honoured
    /// differently, as `what` says.
    pub refused: bool,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.refused { "refused" } else { "note" };
        write!(f, "{how}: {}: {}", self.service, self.what)
    }
}
