//! The one error type for everything Gripway refuses or gives up on, and whose fault it was.
//!
//! A [`Refusal`] names its [`Source`] — the client, the origin, a publisher, or ourselves —
//! and a stable reason label. The source decides everything else the same way everywhere:
//! which status codes it may carry (4xx for clients and publishers, 502/504 for origins,
//! 500/503 for us), the WebSocket close code, the `source` label of
//! `gripway_errors_total{source,reason}`, and the log level (clients' mistakes are debug
//! lines, origins' and publishers' are info lines, ours are warnings). Log lines for one
//! reason are rate-limited ([`Refusal::log`]) so that a flood of bad input cannot flood the
//! log.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Whose fault a refusal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The client sent something it may not (bad head, too large, forged headers...).
    Client,
    /// The origin failed, timed out, or answered something unusable.
    Origin,
    /// A publisher's request was malformed, too large or unauthorised.
    Publisher,
    /// Ours: capacity (too many connections, out of descriptors), configuration (no route),
    /// shutting down.
    Internal,
}

impl Source {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Origin => "origin",
            Source::Publisher => "publisher",
            Source::Internal => "internal",
        }
    }

    /// The WebSocket close code for a refusal from this source, given its HTTP status.
    #[allow(dead_code)] // WebSocket closes move here next
    pub(crate) fn close_code(self, status: u16) -> u16 {
        match (self, status) {
            (Source::Client, 413) => 1009,
            (Source::Client, 403) => 1008,
            (Source::Client, _) | (Source::Publisher, _) => 1002,
            (Source::Origin, _) => 1014,
            (Source::Internal, 503) => 1013,
            (Source::Internal, _) => 1011,
        }
    }
}

/// Something Gripway refused or gave up on.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// Whose fault.
    pub(crate) source: Source,
    /// A stable, lower-case, dash-separated label (the metric's `reason`).
    pub(crate) reason: &'static str,
    /// The HTTP status answered, where there is an answer.
    pub(crate) status: u16,
    /// Text for the log and, where appropriate, the response body.
    pub(crate) detail: Cow<'static, str>,
}

impl Refusal {
    /// The client's fault; `status` is a 4xx.
    pub(crate) fn client(
        status: u16,
        reason: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        debug_assert!((400..500).contains(&status));
        Refusal {
            source: Source::Client,
            reason,
            status,
            detail: detail.into(),
        }
    }

    /// The origin's fault: 504 when it timed out, 502 otherwise.
    pub(crate) fn origin(
        timed_out: bool,
        reason: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        Refusal {
            source: Source::Origin,
            reason,
            status: if timed_out { 504 } else { 502 },
            detail: detail.into(),
        }
    }

    /// A publisher's fault; `status` is a 4xx.
    pub(crate) fn publisher(
        status: u16,
        reason: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        debug_assert!((400..500).contains(&status));
        Refusal {
            source: Source::Publisher,
            reason,
            status,
            detail: detail.into(),
        }
    }

    /// Ours: 503 for capacity and shutdown, 500 for bugs, 502 for a request no route takes
    /// (Pushpin's answer).
    pub(crate) fn internal(
        status: u16,
        reason: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        debug_assert!(status >= 500);
        Refusal {
            source: Source::Internal,
            reason,
            status,
            detail: detail.into(),
        }
    }

    /// The WebSocket close code for this refusal.
    #[allow(dead_code)] // WebSocket closes move here next
    pub(crate) fn close_code(&self) -> u16 {
        self.source.close_code(self.status)
    }

    /// Logs the refusal at its source's level, at most once a second per reason (with the
    /// count of lines left out since).
    pub(crate) fn log(&self, context: &str) {
        let Some(suppressed) = LOG_LIMITER.admit(self.reason) else {
            return;
        };
        let (source, reason, detail) = (self.source.label(), self.reason, &self.detail);
        match self.source {
            Source::Client => {
                tracing::debug!(source, reason, suppressed, "{context}{detail}")
            }
            Source::Origin | Source::Publisher => {
                tracing::info!(source, reason, suppressed, "{context}{detail}")
            }
            Source::Internal => {
                tracing::warn!(source, reason, suppressed, "{context}{detail}")
            }
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} error ({}): {}",
            self.source.label(),
            self.reason,
            self.detail
        )
    }
}

/// Rate limits log lines by key: one a second per key, counting what it leaves out.
pub(crate) struct LogLimiter {
    every: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

/// The process-wide limiter for refusal and warning lines.
pub(crate) static LOG_LIMITER: std::sync::LazyLock<LogLimiter> =
    std::sync::LazyLock::new(|| LogLimiter::new(Duration::from_secs(1)));

impl LogLimiter {
    pub(crate) fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(lines left out since the last one)` when a line for `key` may be written now.
    /// Keys are static labels, so the map stays as small as the set of reasons.
    pub(crate) fn admit(&self, key: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock();
        match last.get_mut(key) {
            Some((at, skipped)) if now.duration_since(*at) < self.every => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                *at = now;
                Some(std::mem::take(skipped))
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// Logs a warning that may repeat (accept failures, descriptor exhaustion) at most once a
/// second per `key`.
#[macro_export]
#[doc(hidden)]
macro_rules! warn_limited {
    ($key:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $crate::error::LOG_LIMITER.admit($key) {
            tracing::warn!(suppressed, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_picks_codes() {
        assert_eq!(Refusal::origin(true, "timeout", "t").status, 504);
        assert_eq!(Refusal::origin(false, "connect", "c").status, 502);
        assert_eq!(Refusal::client(413, "too-large", "x").close_code(), 1009);
        assert_eq!(Refusal::origin(false, "bad", "x").close_code(), 1014);
        assert_eq!(Refusal::internal(503, "full", "x").close_code(), 1013);
        assert_eq!(Source::Publisher.label(), "publisher");
    }

    #[test]
    fn limiter_admits_one_line_a_period_and_counts_the_rest() {
        let l = LogLimiter::new(Duration::from_millis(50));
        assert_eq!(l.admit("a"), Some(0));
        assert_eq!(l.admit("a"), None);
        assert_eq!(l.admit("a"), None);
        assert_eq!(l.admit("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.admit("a"), Some(2));
    }
}
