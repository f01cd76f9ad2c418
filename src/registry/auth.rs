//! Registry credentials: typed per registry on the backend, or those the user already has in the
//! Docker CLI's configuration (see [`docker_config`](super::docker_config)).

use std::fmt;

use crate::model::Secret;

/// Credentials for one registry: a user name and password (or access token), or an identity
/// token (OAuth refresh token, as `docker login` stores for some registries).
///
/// The password and token are [`Secret`]s: never in `Debug`, events, traces, errors or records.
///
/// ```
/// use harbormaster::{RegistryAuth, Secret};
/// let auth = RegistryAuth::basic("deploy", Secret::new("s3cret-pass"));
/// assert_eq!(auth.username(), Some("deploy"));
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct RegistryAuth {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Basic { username: String, password: Secret },
    IdentityToken(Secret),
}

impl RegistryAuth {
    /// A user name and password (or a personal access token in place of the password).
    pub fn basic(username: impl Into<String>, password: Secret) -> Self {
        RegistryAuth { kind: Kind::Basic { username: username.into(), password } }
    }

    /// An identity token (`docker login` stores one as `identitytoken` for registries that give one).
    pub fn identity_token(token: Secret) -> Self {
        RegistryAuth { kind: Kind::IdentityToken(token) }
    }

    /// The user name, if these are basic credentials.
    pub fn username(&self) -> Option<&str> {
        match &self.kind {
            Kind::Basic { username, .. } => Some(username),
            Kind::IdentityToken(_) => None,
        }
    }

    /// Who these credentials are, without the secret: `user "deploy"` or `an identity token`.
    pub fn who(&self) -> String {
        match &self.kind {
            Kind::Basic { username, .. } => format!("user {username:?}"),
            Kind::IdentityToken(_) => "an identity token".into(),
        }
    }

    /// The credential itself, for the target that hands it to a registry (the Docker backend
    /// turns it into the engine's `X-Registry-Auth`). The one place a secret leaves this type.
    pub(crate) fn credential(&self) -> Credential<'_> {
        match &self.kind {
            Kind::Basic { username, password } => Credential::Basic { username, password: password.expose() },
            Kind::IdentityToken(token) => Credential::IdentityToken(token.expose()),
        }
    }
}

/// A registry credential as a target hands it over: the library's own type, so no backend's
/// client types reach `registry`. Borrowed from a [`RegistryAuth`]; never printed.
#[derive(Clone, Copy)]
pub(crate) enum Credential<'a> {
    /// A user name and password (or access token).
    Basic {
        /// The user name.
        username: &'a str,
        /// The password or token.
        password: &'a str,
    },
    /// An identity token.
    IdentityToken(&'a str),
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Basic { username, .. } => {
                f.debug_struct("RegistryAuth").field("username", username).field("password", &"[redacted]").finish()
            }
            Kind::IdentityToken(_) => f.debug_struct("RegistryAuth").field("identity_token", &"[redacted]").finish(),
        }
    }
}

/// Credentials found for a registry, and where they came from (for errors: which credentials
/// were used, never the secret).
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub auth: RegistryAuth,
    /// `given to the backend`, `~/.docker/config.json`, `docker-credential-pass`.
    pub source: String,
}

impl Found {
    /// `user "deploy" (from /root/.docker/config.json)`.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", self.auth.who(), self.source)
    }
}
