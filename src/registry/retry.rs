//! The retry budget of one registry for one run, shared by every thread
//! that uses its [`super::Client`]: retries continue while the registry
//! has failed for less than the window (20 s by default) with no success in
//! between; once it is spent, every request fails at once with the cause
//! that spent it. So giving up on a dead registry takes the window, however
//! many images and blobs the run holds, and says why once.
//!
//! A registry that answers is not dead: one request that keeps getting a
//! 5xx (a manifest the registry cannot store, while nothing else is in
//! flight) fails on its own attempts, and only its image fails. Answers
//! spend the budget only when two or more different requests failed
//! through the whole window, or when the registry has not answered one
//! request well in this run (the first request, `GET /v2/`, failing
//! throughout); nothing answering spends it alone.
//!
//! Each retry is logged at info level (`-v`); the first time one is under
//! way for more than 2 s, a warning says so. Log lines name the request
//! (URL without its query) and the failure, never credentials or tokens.
//!
//! Not here: which failures are worth a retry, or the backoff
//! ([`super::client`]).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::registry::{Failure, RegistryError};

/// A retry under way longer than this is announced without `-v`.
const ANNOUNCE_AFTER: Duration = Duration::from_secs(2);

pub struct Budget {
    registry: String,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the current run of failures began; `None` after a success.
    failing_since: Option<Instant>,
    /// The warning of this run of failures was given.
    warned: bool,
    /// The requests that failed in this run of failures.
    failing: HashSet<String>,
    /// The registry did what a request asked once in this run.
    ever_succeeded: bool,
    /// What spent the budget: every later request fails with it.
    spent: Option<RegistryError>,
}

impl Budget {
    pub fn new(registry: &str, window: Duration) -> Budget {
        Budget {
            registry: registry.to_string(),
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// The failure that spent the budget, if it is spent.
    pub fn spent(&self) -> Option<RegistryError> {
        self.state.lock().expect("not poisoned").spent.clone()
    }

    /// The registry answered: the failures so far were passing.
    pub fn success(&self) {
        let mut s = self.state.lock().expect("not poisoned");
        s.failing_since = None;
        s.warned = false;
        s.failing.clear();
    }

    /// The registry did what a request asked (a 2xx): it works, so one
    /// request failing later is that request's failure.
    pub fn established(&self) {
        self.success();
        self.state.lock().expect("not poisoned").ever_succeeded = true;
    }

    /// A request failed with a temporary `err` and wants to try again after
    /// `wanted`: the delay to wait (never past the window), or the error
    /// that ends the run's retries.
    pub fn retry(
        &self,
        err: &RegistryError,
        attempt: u32,
        wanted: Duration,
    ) -> Result<Duration, RegistryError> {
        let mut s = self.state.lock().expect("not poisoned");
        let elapsed = self.note(&mut s, err)?;
        // Past the window only one request is failing: its own attempts
        // bound it.
        let delay = match self.window.checked_sub(elapsed) {
            Some(left) => wanted.min(left),
            None => wanted,
        };
        log::info!(
            "{err}; retry {attempt} in {:.1} s (retrying {} for up to {} s)",
            delay.as_secs_f64(),
            self.registry,
            self.window.as_secs()
        );
        if !s.warned && elapsed + delay > ANNOUNCE_AFTER {
            s.warned = true;
            let state = match err.kind {
                Failure::Status(_) => "is failing",
                _ => "is not answering",
            };
            log::warn!(
                "registry {} {state} ({}); retrying for up to {} s",
                self.registry,
                err.brief(),
                self.window.as_secs()
            );
        }
        Ok(delay)
    }

    /// A request failed with a temporary `err` and will not be tried again
    /// (its data was sent once, or its attempts are used up): the failure
    /// still counts, and may be the one that spends the budget.
    pub fn failed(&self, err: RegistryError) -> RegistryError {
        let mut s = self.state.lock().expect("not poisoned");
        match self.note(&mut s, &err) {
            Ok(_) => err,
            Err(spent) => spent,
        }
    }

    /// Records a failure; how long the registry has been failing, or the
    /// error that ends retries when that is the whole window.
    fn note(&self, s: &mut State, err: &RegistryError) -> Result<Duration, RegistryError> {
        if let Some(spent) = &s.spent {
            return Err(spent.clone());
        }
        let now = Instant::now();
        let elapsed = now - *s.failing_since.get_or_insert(now);
        s.failing.insert(err.request.clone());
        let nothing_answers = matches!(err.kind, Failure::Unreachable(_) | Failure::Connection(_));
        let registry_failing = nothing_answers || s.failing.len() > 1 || !s.ever_succeeded;
        if elapsed >= self.window && registry_failing {
            let mut spent = err.clone().on(&self.registry).concerns_target();
            spent.gave_up_after = Some(u32::try_from(self.window.as_secs()).unwrap_or(u32::MAX));
            s.spent = Some(spent.clone());
            return Err(spent);
        }
        Ok(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> RegistryError {
        let mut e = RegistryError::status("GET http://r/v2/".into(), 503, b"");
        e.kind = Failure::Unreachable("Connection refused".into());
        e
    }

    #[test]
    fn a_spent_budget_fails_every_later_request_with_its_cause() {
        let b = Budget::new("r:5000", Duration::from_millis(200));
        let d = b.retry(&refused(), 1, Duration::from_secs(10)).unwrap();
        assert!(
            d <= Duration::from_millis(200),
            "never waits past the window"
        );
        std::thread::sleep(Duration::from_millis(210));
        let spent = b.retry(&refused(), 2, Duration::ZERO).unwrap_err();
        assert!(spent.is_whole_target() && !spent.is_temporary());
        let other = RegistryError::status("HEAD http://r/v2/x".into(), 500, b"");
        assert_eq!(b.failed(other).to_string(), spent.to_string());
        assert_eq!(
            spent.to_string(),
            "GET http://r/v2/: connection failed, nothing answers there (Connection refused); \
             gave up after 0 s of retries"
        );
    }

    #[test]
    fn one_request_answered_with_5xx_does_not_spend_the_budget() {
        let b = Budget::new("r:5000", Duration::from_millis(100));
        b.established(); // earlier requests went well
        let put = RegistryError::status("PUT http://r/v2/a/manifests/1".into(), 503, b"");
        b.retry(&put, 1, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        let d = b.retry(&put, 2, Duration::from_millis(5)).unwrap();
        assert_eq!(
            d,
            Duration::from_millis(5),
            "its own backoff, past the window"
        );
        assert!(b.spent().is_none());
        let head = RegistryError::status("HEAD http://r/v2/a/blobs/x".into(), 503, b"");
        let spent = b.retry(&head, 1, Duration::ZERO).unwrap_err();
        assert!(
            spent.is_whole_target(),
            "two requests failing: the registry's failure"
        );
    }

    #[test]
    fn a_success_starts_the_window_again() {
        let b = Budget::new("r:5000", Duration::from_millis(300));
        b.retry(&refused(), 1, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        b.success();
        std::thread::sleep(Duration::from_millis(200));
        b.retry(&refused(), 1, Duration::ZERO).unwrap();
        assert!(b.spent().is_none());
    }
}
