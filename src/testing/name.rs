//! Test environments' names: a stem from the described environment's name, then what makes the
//! name unique (a nonce) or what it is matched by (a fingerprint).

/// The first 24 characters of an environment's name, as the start of a test environment's own
/// (room for what makes it unique within a DNS label).
pub(crate) fn short_stem(stem: &str) -> String {
    let stem: String = stem.chars().take(24).collect();
    stem.trim_end_matches(['-', '_', '.']).to_string()
}
