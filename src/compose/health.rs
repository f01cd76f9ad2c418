//! A compose `healthcheck` as the library's readiness gate and as the engine's own check.
//!
//! The engine runs the check exactly as the file gives it (`docker ps` shows its status, as under
//! Compose), with the file's timings or Docker's defaults (30 s interval, 30 s timeout, 3
//! retries). The library's gate waits as long as those allow (start period + interval ×
//! retries) and probes more often meanwhile, to notice readiness sooner. A test that is a
//! recognisable HTTP or TCP check of the container itself (`curl -f http://localhost:8080/health`,
//! `wget --spider …`, `nc -z localhost 5432`) is probed from outside, which also works for an
//! image without curl or a shell; any other test runs inside the container as Compose runs it
//! (`CMD` as given, `CMD-SHELL` through `/bin/sh -c`).

use std::time::Duration;

use super::context::{Problem, R};
use super::draft::Svc;
use super::values;
use super::yaml::{Node, Value};
use crate::model::{EngineHealthcheck, HealthCheck, NetworkMode};

/// Docker's health check timings where the file is silent.
const INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(30);
const RETRIES: u32 = 3;

/// Reads `healthcheck`.
pub(crate) fn read(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    values::mapping(v, key)?;
    values::only(v, key, &["test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"])?;
    let disabled = match v.get("disable") {
        Some(d) => values::boolean(d, &format!("{key}.disable"))?,
        None => false,
    };
    let test: Vec<String> = match v.get("test") {
        None => Vec::new(),
        Some(t) => match &t.value {
            Value::Null => Vec::new(),
            Value::Scalar { text, .. } => vec!["CMD-SHELL".to_string(), text.clone()],
            Value::Seq(_) => values::strings(t, &format!("{key}.test"))?,
            Value::Map(_) => return Err(Problem::new(&t.at, format!("{key}.test"), "a string or a list")),
        },
    };
    let test_at = v.get("test").map_or(&v.at, |t| &t.at);
    let read = test_kind(&test).map_err(|r| Problem::new(test_at, format!("{key}.test"), r))?;
    if disabled || read == Kind::Disabled {
        s.d.options.healthcheck = Some(EngineHealthcheck::disabled());
        s.d.health = None;
        return Ok(());
    }
    let given = |k: &str| v.get(k).filter(|n| !matches!(n.value, Value::Null));
    let dur = |k: &str| -> R<Option<Duration>> {
        given(k).map(|n| values::duration(n, &format!("{key}.{k}"))).transpose().map(|d| d.filter(|d| !d.is_zero()))
    };
    let interval = dur("interval")?;
    let timeout = dur("timeout")?;
    let start_period = dur("start_period")?;
    let start_interval = dur("start_interval")?;
    let retries = given("retries").map(|n| values::count(n, &format!("{key}.retries"))).transpose()?.filter(|r| *r > 0);
    s.d.options.healthcheck = Some(EngineHealthcheck { test: test.clone(), interval, timeout, retries, start_period });
    let outside = matches!(s.d.options.network_mode, None | Some(NetworkMode::Bridge | NetworkMode::Host));
    let mut check = match read {
        Kind::Image => HealthCheck::docker(),
        Kind::Check => probe(&test, outside),
        Kind::Disabled => return Ok(()),
    };
    check = check
        .interval(interval.unwrap_or(INTERVAL))
        .timeout(timeout.unwrap_or(TIMEOUT))
        .retries(retries.unwrap_or(RETRIES))
        .start_period(start_period.unwrap_or_default());
    if let Some(si) = start_interval {
        check = check.start_interval(si);
    }
    s.d.health = Some(check);
    Ok(())
}

/// The image's own check with Docker's timings: for a service another waits on to be healthy
/// while the file gives it no `healthcheck` (Compose then waits on the image's `HEALTHCHECK`).
pub(crate) fn image_check() -> HealthCheck {
    HealthCheck::docker().interval(INTERVAL).timeout(TIMEOUT).retries(RETRIES)
}

/// What a compose test asks for.
#[derive(Debug, PartialEq)]
enum Kind {
    /// No check (`NONE`).
    Disabled,
    /// Inherit the image's (an empty test).
    Image,
    /// A check.
    Check,
}

fn test_kind(items: &[String]) -> Result<Kind, String> {
    let Some((first, rest)) = items.split_first() else { return Ok(Kind::Image) };
    match first.as_str() {
        "NONE" => Ok(Kind::Disabled),
        "CMD" if rest.is_empty() => Err("CMD needs a command after it".into()),
        "CMD" => Ok(Kind::Check),
        "CMD-SHELL" if rest.len() != 1 => Err("CMD-SHELL takes exactly one string".into()),
        "CMD-SHELL" => Ok(Kind::Check),
        other => Err(format!("a test list starts with CMD, CMD-SHELL or NONE, not {other:?}")),
    }
}

/// The probe of a test (`CMD …` or `CMD-SHELL script`): from outside when it is an HTTP or TCP
/// check of the container itself and `outside` probes can reach it, otherwise run inside.
pub(crate) fn probe(test: &[String], outside: bool) -> HealthCheck {
    let Some((first, rest)) = test.split_first() else { return HealthCheck::docker() };
    if first == "CMD-SHELL" {
        let script = rest.first().cloned().unwrap_or_default();
        let recognised = if outside {
            status_check(strip_exit(&script)).or_else(|| simple_words(strip_exit(&script)).and_then(|w| recognise(&w)))
        } else {
            None
        };
        return recognised.unwrap_or_else(|| HealthCheck::exec(["/bin/sh".to_string(), "-c".into(), script]));
    }
    let recognised = if outside { recognise(rest) } else { None };
    recognised.unwrap_or_else(|| HealthCheck::exec(rest.to_vec()))
}

/// `… || exit 1` and the like add nothing to a check's meaning.
fn strip_exit(script: &str) -> &str {
    let s = script.trim();
    for tail in ["|| exit 1", "||exit 1", "|| false", "|| exit"] {
        if let Some(head) = s.strip_suffix(tail) {
            return head.trim_end();
        }
    }
    s
}

/// A command line split as `sh` would, for simple lines only: quotes and backslashes; `None`
/// when it uses anything else a shell would interpret (pipes, `;`, `&&`, `$`, redirections other
/// than to `/dev/null`), so that only a plain command is recognised as a probe.
fn simple_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        '$' | '`' => return None,
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '|' | ';' | '&' | '$' | '`' | '<' | '(' | ')' => return None,
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    // `>/dev/null` and `2>&1`-free redirections to /dev/null are harmless.
    let words: Vec<String> =
        words.into_iter().filter(|w| !matches!(w.as_str(), ">/dev/null" | "2>/dev/null")).collect();
    if words.iter().any(|w| w.contains('>')) {
        return None;
    }
    Some(words)
}

/// `curl -s -o /dev/null -w '%{http_code}' http://localhost:PORT/PATH | grep -q 'CODE'`: an HTTP
/// check that expects exactly that status.
fn status_check(script: &str) -> Option<HealthCheck> {
    let (curl, grep) = script.split_once('|')?;
    let grep = simple_words(grep.trim())?;
    let code: u16 = match grep.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["grep", "-q", code] | ["grep", code] | ["grep", "-qx", code] | ["grep", "-xq", code] => code.parse().ok()?,
        _ => return None,
    };
    let mut words = simple_words(curl.trim())?;
    if words.first().map(String::as_str) != Some("curl") {
        return None;
    }
    // `-w '%{http_code}'` prints the status; with it gone, what is left must be a plain check.
    let w = words.iter().position(|a| a == "-w" || a == "--write-out")?;
    if words.get(w + 1).map(String::as_str) != Some("%{http_code}") {
        return None;
    }
    words.drain(w..w + 2);
    let check = recognise(&words)?;
    (100..600).contains(&code).then(|| check.expect_status(code..=code))
}

/// An HTTP or TCP check of the container itself, if the command is one.
fn recognise(argv: &[String]) -> Option<HealthCheck> {
    let (program, args) = argv.split_first()?;
    let program = program.rsplit('/').next()?;
    match program {
        "curl" => {
            // Flags that change nothing but output and failure on HTTP errors.
            let harmless = |a: &str| {
                matches!(
                    a,
                    "-f" | "--fail"
                        | "-s"
                        | "--silent"
                        | "-S"
                        | "--show-error"
                        | "-fs"
                        | "-sf"
                        | "-fsS"
                        | "-sSf"
                        | "-fSs"
                        | "-L"
                        | "--location"
                        | "-k"
                        | "--insecure"
                )
            };
            let fails_on_errors =
                args.iter().any(|a| a == "--fail" || (a.starts_with('-') && !a.starts_with("--") && a.contains('f')));
            let check = http_of(args, harmless, &["-o", "--output", "-m", "--max-time", "--connect-timeout"])?;
            // Without -f, curl exits 0 on any HTTP answer.
            Some(if fails_on_errors { check.expect_status(200..400) } else { check.expect_status(100..600) })
        }
        "wget" => {
            let harmless = |a: &str| {
                matches!(
                    a,
                    "-q" | "--quiet"
                        | "--spider"
                        | "-O-"
                        | "-qO-"
                        | "-qO"
                        | "--no-verbose"
                        | "-nv"
                        | "--tries=1"
                        | "-S"
                ) || a.starts_with("--timeout=")
                    || a.starts_with("--tries=")
            };
            // wget exits non-zero on 4xx and 5xx.
            Some(http_of(args, harmless, &["-O", "-T", "--output-document", "-t"])?.expect_status(200..400))
        }
        "nc" | "ncat" | "netcat" => {
            let mut rest = args
                .iter()
                .map(String::as_str)
                .filter(|a| !matches!(*a, "-z" | "-zv" | "-vz" | "-v" | "-w1" | "-w" | "1" | "-q0"));
            let host = rest.next()?;
            let port: u16 = rest.next()?.parse().ok()?;
            (rest.next().is_none() && is_local(host) && args.iter().any(|a| a.starts_with("-z") || a.contains('z')))
                .then(|| HealthCheck::tcp(port))
        }
        _ => None,
    }
}

/// `args` are harmless flags, flags with one value (`takes_value`), and exactly one local URL.
fn http_of(args: &[String], harmless: impl Fn(&str) -> bool, takes_value: &[&str]) -> Option<HealthCheck> {
    let mut url = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if takes_value.contains(&a) {
            i += 2;
            continue;
        }
        if a.starts_with("http://") {
            if url.replace(a).is_some() {
                return None;
            }
        } else if !harmless(a) {
            return None;
        }
        i += 1;
    }
    let rest = url?.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, p.parse::<u16>().ok()?),
        _ => (authority, 80),
    };
    is_local(host).then(|| HealthCheck::http(port, path))
}

fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Probe;

    fn probe_of(items: &[&str]) -> Probe {
        let test: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        probe(&test, true).probe().clone()
    }

    #[test]
    fn curl_wget_and_nc_become_probes_from_outside() {
        assert!(
            matches!(probe_of(&["CMD", "curl", "-f", "http://localhost:8080/health"]), Probe::Http { port: 8080, ref path, .. } if path == "/health")
        );
        assert!(matches!(
            probe_of(&["CMD-SHELL", "curl -fsS http://127.0.0.1:3000/api/health || exit 1"]),
            Probe::Http { port: 3000, .. }
        ));
        assert!(
            matches!(probe_of(&["CMD-SHELL", "wget --no-verbose --tries=1 --spider http://localhost/ || exit 1"]), Probe::Http { port: 80, ref path, .. } if path == "/")
        );
        assert!(matches!(probe_of(&["CMD", "nc", "-z", "localhost", "5432"]), Probe::Tcp { port: 5432 }));
        let script =
            "curl -s -o /dev/null -w '%{http_code}' http://localhost:8081/api/health | grep -q '200' || exit 1";
        assert!(
            matches!(probe_of(&["CMD-SHELL", script]), Probe::Http { port: 8081, ref path, status_min: 200, status_max: 200, .. } if path == "/api/health")
        );
        let inside = probe(&["CMD".to_string(), "curl".into(), "-f".into(), "http://localhost/".into()], false);
        assert!(matches!(inside.probe(), Probe::Exec { .. }), "no outside probe without a reachable address");
    }

    #[test]
    fn anything_else_runs_inside_as_compose_runs_it() {
        assert!(
            matches!(probe_of(&["CMD", "pg_isready", "-U", "app"]), Probe::Exec { ref command } if command == &["pg_isready", "-U", "app"])
        );
        for script in
            ["curl -f http://localhost/ | grep ok", "curl -f http://db:8080/", "curl -H 'X: y' http://localhost/"]
        {
            assert!(
                matches!(probe_of(&["CMD-SHELL", script]), Probe::Exec { ref command } if command[..2] == ["/bin/sh", "-c"]),
                "{script}"
            );
        }
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(test_kind(&s(&["NONE"])), Ok(Kind::Disabled));
        assert_eq!(test_kind(&[]), Ok(Kind::Image));
        assert!(test_kind(&s(&["CMD"])).is_err());
        assert!(test_kind(&s(&["RUN", "x"])).is_err());
    }
}
