//! What an engine's pull or push error means: its words mapped onto [`RegistryErrorKind`].

use crate::error::RegistryErrorKind;

/// The kind of a registry failure, from the engine's message (Docker Engine 20.10 and later word
/// them as below; anything else is [`RegistryErrorKind::Other`]).
pub(crate) fn classify(message: &str) -> RegistryErrorKind {
    let m = message.to_ascii_lowercase();
    if m.contains("no matching manifest for") || m.contains("does not match the specified platform") {
        RegistryErrorKind::WrongPlatform
    } else if m.contains("unauthorized")
        || m.contains("no basic auth credentials")
        || m.contains("authentication required")
        || m.contains("denied: requested access")
        || m.contains("incorrect username or password")
        || m.contains("401 unauthorized")
    {
        RegistryErrorKind::Unauthorized
    } else if m.contains("manifest unknown")
        || m.contains("not found: manifest")
        || m.contains("repository does not exist")
        || m.contains("name unknown")
        || (m.contains("manifest for") && m.contains("not found"))
        || m.contains("pull access denied")
        || m.contains("no such image")
        || m.contains("does not exist locally")
    {
        RegistryErrorKind::NotFound
    } else if m.contains("dial tcp")
        || m.contains("connection refused")
        || m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("tls handshake timeout")
        || m.contains("network is unreachable")
        || m.contains("no route to host")
        || m.contains("server gave http response to https client")
        || m.contains("connection reset")
        || m.contains("eof")
    {
        RegistryErrorKind::Unreachable
    } else {
        RegistryErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_words_map_to_kinds() {
        let cases = [
            (
                "manifest for 127.0.0.1:5055/t/acc:nope not found: manifest unknown: manifest unknown",
                RegistryErrorKind::NotFound,
            ),
            (
                "Head \"http://127.0.0.1:5055/v2/t/acc/manifests/1\": no basic auth credentials",
                RegistryErrorKind::Unauthorized,
            ),
            ("unauthorized: authentication required", RegistryErrorKind::Unauthorized),
            (
                "Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused",
                RegistryErrorKind::Unreachable,
            ),
            (
                "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host",
                RegistryErrorKind::Unreachable,
            ),
            ("no matching manifest for linux/amd64 in the manifest list entries", RegistryErrorKind::WrongPlatform),
            ("something else entirely", RegistryErrorKind::Other),
        ];
        for (m, k) in cases {
            assert_eq!(classify(m), k, "{m}");
        }
    }
}
