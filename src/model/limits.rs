//! Bounds on what a description may hold, checked when it is built: what any target and the
//! Linux kernel accept, and sane maxima that keep every computation on durations and sizes in
//! range (no overflow anywhere, whatever is passed). A target's own numbers are its own: what it
//! cannot honour it says before anything changes, through
//! [`Backend::limits`](crate::backend::Backend::limits) (the Docker engine's smallest CPU and
//! memory limits are in its backend).
//!
//! | setting | bound | why |
//! |---|---|---|
//! | deadlines, lock timeout, rollout durations, canary pauses | ≤ [`MAX_WAIT`] (30 days) | sane; keeps `now + d` in range |
//! | health check interval, start interval, timeout, start period; stop grace | ≤ [`MAX_STEP`] (1 day) | sane |
//! | health check retries, success threshold | ≤ [`MAX_THRESHOLD`] | sane |
//! | replicas | ≤ [`MAX_REPLICAS`] | one environment's instances are planned in memory |
//! | memory | 1 MiB ..= [`MAX_MEMORY_MB`] | bytes must fit an `i64` (the Docker engine asks for 6 MiB at least: its plan refuses less) |
//! | cpus | [`MIN_CPUS`] ..= [`MAX_CPUS`] (and the host's cores, checked by the plan) | a thousandth of a core, the finest any target measures (the Docker engine takes 0.01 at least: its plan refuses less) |
//! | one environment entry `KEY=VALUE` | ≤ [`MAX_ENV_ENTRY`] bytes | Linux `MAX_ARG_STRLEN` |
//! | all environment entries and arguments | ≤ [`MAX_ENV_TOTAL`] bytes | Linux `ARG_MAX` (with room) |
//! | NUL in names, values, arguments, paths | refused | a C string cannot hold it |

use std::time::Duration;

/// Longest deadline, timeout or wait a description may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest health check period or stop grace.
pub const MAX_STEP: Duration = Duration::from_secs(24 * 3600);
/// Largest health check threshold.
pub const MAX_THRESHOLD: u32 = 10_000;
/// Most replicas of one service.
pub const MAX_REPLICAS: u32 = 10_000;
/// Largest memory limit, in MiB (1 PiB).
pub const MAX_MEMORY_MB: u64 = 1 << 30;
/// Smallest CPU limit a description may ask for: a thousandth of a core (a target may ask for
/// more: the Docker engine's plan refuses less than 0.01).
pub const MIN_CPUS: f64 = 0.001;
/// Largest CPU limit a description may ask for (the plan also checks the host's cores).
pub const MAX_CPUS: f64 = 4096.0;
/// Longest `KEY=VALUE` environment entry, NUL terminator included (Linux `MAX_ARG_STRLEN`).
pub const MAX_ENV_ENTRY: usize = 128 * 1024;
/// Most bytes of environment and arguments together (Linux `ARG_MAX` is 2 MiB with an 8 MiB stack).
pub const MAX_ENV_TOTAL: usize = 1024 * 1024;
/// The largest file written into a container ([`ContainerFile`](crate::ContainerFile)): 16 MiB.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Why `d` is out of bounds for `what`, if it is.
pub(crate) fn duration(what: &str, d: Duration, max: Duration) -> Option<String> {
    (d > max).then(|| {
        format!("{what} of {} is longer than the {} allowed", crate::duration::human(d), crate::duration::human(max))
    })
}

/// Why `s` cannot be passed to a process, if it cannot (a NUL byte).
pub(crate) fn c_string(what: &str, s: &str) -> Option<String> {
    s.contains('\0').then(|| format!("{what} contains a NUL byte, which a process cannot receive"))
}

/// A short, safe rendering of a user value for a message (never used for secret values).
pub(crate) fn show(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    format!("{out:?}")
}
