//! How the in-memory runtime's instances behave ([`Behavior`]) and the faults it can be told to
//! inject ([`Fault`]).

use std::time::Duration;

/// How instances of a service (or of an image) behave once started. The default: ready at once,
/// HTTP probes answer 200, exec answers exit code 0, a job exits 0 after 10 ms.
#[derive(Clone, Debug)]
pub struct Behavior {
    pub(crate) ready_after: Duration,
    pub(crate) http_status: u16,
    pub(crate) flap: Option<(u32, u32)>,
    pub(crate) crash_after: Option<(Duration, i64)>,
    pub(crate) job_exit: (Duration, i64),
    pub(crate) exec_exit: i64,
    pub(crate) log_lines: Vec<String>,
    pub(crate) body: String,
    pub(crate) answer_after: Duration,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            ready_after: Duration::ZERO,
            http_status: 200,
            flap: None,
            crash_after: None,
            job_exit: (Duration::from_millis(10), 0),
            exec_exit: 0,
            log_lines: vec!["started".into()],
            body: "ok".into(),
            answer_after: Duration::ZERO,
        }
    }
}

impl Behavior {
    /// The default behaviour: healthy at once.
    pub fn healthy() -> Self {
        Behavior::default()
    }

    /// Its ports accept connections only after `d` (a slow start).
    pub fn ready_after(mut self, d: Duration) -> Self {
        self.ready_after = d;
        self
    }

    /// Every HTTP request is answered with `status` (a `/health` that fails: 503).
    pub fn http_status(mut self, status: u16) -> Self {
        self.http_status = status;
        self
    }

    /// HTTP answers flap: `up` answers of the configured status, then `down` answers of 503, and
    /// again.
    pub fn flapping(mut self, up: u32, down: u32) -> Self {
        self.flap = Some((up.max(1), down.max(1)));
        self
    }

    /// The instance dies (exits with `code`) `after` it starts.
    pub fn crash_after(mut self, after: Duration, code: i64) -> Self {
        self.crash_after = Some((after, code));
        self
    }

    /// As a job: runs for `d`, then exits with `code`.
    pub fn job(mut self, d: Duration, code: i64) -> Self {
        self.job_exit = (d, code);
        self
    }

    /// Commands run with `exec` (and exec health checks) exit with `code`.
    pub fn exec_exit(mut self, code: i64) -> Self {
        self.exec_exit = code;
        self
    }

    /// The lines its log holds.
    pub fn logs<I, S>(mut self, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.log_lines = lines.into_iter().map(Into::into).collect();
        self
    }

    /// Each HTTP answer takes `d` (a slow or stuck server: probes time out).
    pub fn answer_after(mut self, d: Duration) -> Self {
        self.answer_after = d;
        self
    }

    /// The body its HTTP answers carry (a version string, to tell versions apart under load).
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

/// A fault the in-memory runtime injects ([`MemoryBackend::inject`](super::MemoryBackend::inject)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The next `times` instance creations of `service` fail (as an engine that refuses them).
    CreateFails {
        /// The service.
        service: String,
        /// How many creations fail.
        times: u32,
    },
    /// The next `times` starts of `service` fail.
    StartFails {
        /// The service.
        service: String,
        /// How many starts fail.
        times: u32,
    },
    /// Every call fails at once as unreachable, until [`Fault::Heal`].
    Unreachable,
    /// Every call hangs (never answers), until [`Fault::Heal`]: what the library's deadlines are for.
    Hang,
    /// Record writes fail (the lock and the state store), until [`Fault::Heal`].
    RecordsFail,
    /// Ends `Unreachable`, `Hang` and `RecordsFail`.
    Heal,
}
