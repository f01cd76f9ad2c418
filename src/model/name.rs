//! Name rules: service, project, environment and volume names become container names and DNS names.

use crate::error::ValidationError;

/// Checks that `name` can be a DNS label: 1-63 characters of `a-z`, `0-9` and `-`, starting with a
/// letter and not ending with `-`. A volume or service name may also hold `_` (compose files name
/// them `postgres_data`, `plausible_db`; the engine's DNS resolves such a service name as
/// written, and a target whose DNS cannot refuses it in the plan).
pub(crate) fn check(kind: &'static str, name: &str) -> Result<(), ValidationError> {
    let fail = |reason: &str| ValidationError::InvalidName { kind, name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() {
        return Err(fail("it is empty"));
    }
    if name.len() > 63 {
        return Err(fail("it is longer than 63 characters"));
    }
    let underscore = kind == "volume" || kind == "service";
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || (underscore && *c == '_')))
    {
        return Err(fail(&format!("character {c:?} is not allowed")));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(fail("it must start with a letter"));
    }
    if name.ends_with('-') {
        return Err(fail("it must not end with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["db", "api-2", "a", "web-front-end"] {
            assert!(check("service", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("Api", "'A'"),
            ("2db", "start with a letter"),
            ("db-", "end with"),
            ("my.db", "'.'"),
            ("db.x", "'.'"),
            ("émoji", "'é'"),
        ] {
            let err = check("service", bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(check("service", &"a".repeat(64)).unwrap_err().to_string().contains("63"));
        assert!(check("volume", "postgres_data").is_ok(), "compose's volume names");
        assert!(check("service", "plausible_db").is_ok(), "compose's service names");
        assert!(check("project", "postgres_data").is_err());
    }
}
