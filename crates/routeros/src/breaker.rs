//! The circuit breaker in front of the device: after `failures` transport failures in a row
//! (no answer, refused or dropped connections, HTTP 5xx), commands fail at once with
//! UNAVAILABLE for a cool-down instead of each waiting its deadline and piling sessions onto a
//! struggling device. After the cool-down one command goes through as a probe (half-open): an
//! answer closes the breaker, a failure opens it again for twice as long (at most
//! [`MAX_COOL_DOWN_FACTOR`] times the configured cool-down).
//!
//! Only transport failures count: an answer of the device, even a refusal, proves it is there.
//! Pure state; the time is given by the caller.

use std::time::{Duration, Instant};

/// Default number of transport failures in a row that opens the breaker.
pub const DEFAULT_FAILURES: u32 = 5;
/// Default first cool-down.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(10);
/// The cool-down doubles after each failed probe, up to this many times the first.
pub const MAX_COOL_DOWN_FACTOR: u32 = 8;

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Transport failures in a row that open it; 0 disables the breaker.
    pub failures: u32,
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: DEFAULT_FAILURES,
            cool_down: DEFAULT_COOL_DOWN,
        }
    }
}

/// The breaker's state as metrics and Probe show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open (the value of the state gauge).
    pub fn code(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// How a command went, as far as the breaker cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The device answered (with a result or a refusal).
    Answered,
    /// No answer: the transport failed, with this reason.
    TransportFailed(String),
}

/// Why a command was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub failures: u32,
    pub last_error: String,
    /// Until the next probe may go (zero while a probe is in flight).
    pub retry_in: Duration,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the RDS did not answer {} commands in a row (last: {}); not asking it again ",
            self.failures, self.last_error
        )?;
        if self.retry_in.is_zero() {
            f.write_str("until the probe in flight answers")
        } else {
            write!(f, "for {} ms", self.retry_in.as_millis())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cool_down: Duration },
    HalfOpen { cool_down: Duration, probing: bool },
}

/// What [`Breaker::admit`] gave: to be handed back to [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    probe: bool,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Failures in a row when it opened, and the last one's reason.
    failures: u32,
    last_error: String,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed { failures: 0 },
            failures: 0,
            last_error: String::new(),
        }
    }

    /// May a command be sent at `now`?
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, Rejected> {
        match self.state {
            State::Closed { .. } => Ok(Ticket { probe: false }),
            State::Open { until, cool_down } if now >= until => {
                self.state = State::HalfOpen {
                    cool_down,
                    probing: true,
                };
                Ok(Ticket { probe: true })
            }
            State::Open { until, .. } => Err(self.rejected(until - now)),
            State::HalfOpen {
                cool_down,
                probing: false,
            } => {
                self.state = State::HalfOpen {
                    cool_down,
                    probing: true,
                };
                Ok(Ticket { probe: true })
            }
            State::HalfOpen { probing: true, .. } => Err(self.rejected(Duration::ZERO)),
        }
    }

    /// Records how an admitted command went, at `now`.
    pub fn record(&mut self, ticket: Ticket, outcome: Outcome, now: Instant) {
        if self.config.failures == 0 {
            return;
        }
        match (outcome, self.state.clone()) {
            (Outcome::Answered, _) => {
                // An answer proves the device is there, whatever was in flight before.
                self.state = State::Closed { failures: 0 };
            }
            (Outcome::TransportFailed(error), State::Closed { failures }) => {
                let failures = failures + 1;
                self.last_error = error;
                if failures >= self.config.failures {
                    self.failures = failures;
                    self.open(now, self.config.cool_down);
                } else {
                    self.state = State::Closed { failures };
                }
            }
            (Outcome::TransportFailed(error), State::HalfOpen { cool_down, .. })
                if ticket.probe =>
            {
                self.failures += 1;
                self.last_error = error;
                let longest = self.config.cool_down * MAX_COOL_DOWN_FACTOR;
                self.open(now, (cool_down * 2).min(longest));
            }
            // A command admitted before the breaker opened, failing late: already counted.
            (Outcome::TransportFailed(error), _) => self.last_error = error,
        }
    }

    /// A probe that was admitted but never ran to an outcome (its caller went away): the next
    /// command may probe.
    pub fn abandon(&mut self, ticket: Ticket) {
        if let (true, State::HalfOpen { cool_down, .. }) = (ticket.probe, &self.state) {
            self.state = State::HalfOpen {
                cool_down: *cool_down,
                probing: false,
            };
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn open(&mut self, now: Instant, cool_down: Duration) {
        self.state = State::Open {
            until: now + cool_down,
            cool_down,
        };
    }

    fn rejected(&self, retry_in: Duration) -> Rejected {
        Rejected {
            failures: self.failures,
            last_error: self.last_error.clone(),
            retry_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    fn breaker(failures: u32) -> Breaker {
        Breaker::new(BreakerConfig {
            failures,
            cool_down: COOL,
        })
    }

    fn fail(b: &mut Breaker, now: Instant, why: &str) {
        let ticket = b.admit(now).expect("admitted");
        b.record(ticket, Outcome::TransportFailed(why.into()), now);
    }

    #[test]
    fn failures_in_a_row_open_it_and_an_answer_in_between_resets_the_count() {
        let t0 = Instant::now();
        let mut b = breaker(3);
        fail(&mut b, t0, "refused");
        fail(&mut b, t0, "refused");
        let ticket = b.admit(t0).unwrap();
        b.record(ticket, Outcome::Answered, t0);
        fail(&mut b, t0, "refused");
        fail(&mut b, t0, "refused");
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&mut b, t0, "no answer within 30000 ms");
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.admit(t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(rejected.failures, 3);
        assert_eq!(rejected.retry_in, Duration::from_secs(6));
        let text = rejected.to_string();
        assert!(
            text.contains("3 commands in a row") && text.contains("no answer within 30000 ms"),
            "{text}"
        );
        assert!(text.ends_with("for 6000 ms"), "{text}");
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_and_its_answer_closes_it() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        fail(&mut b, t0, "reset");
        let later = t0 + COOL;
        let probe = b.admit(later).expect("the probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Others wait for the probe.
        let waiting = b.admit(later).unwrap_err();
        assert_eq!(waiting.retry_in, Duration::ZERO);
        assert!(
            waiting
                .to_string()
                .contains("until the probe in flight answers")
        );
        b.record(probe, Outcome::Answered, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(later).is_ok());
    }

    #[test]
    fn a_failed_probe_doubles_the_cool_down_up_to_its_bound() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        fail(&mut b, t0, "reset");
        let mut now = t0;
        let mut cool = COOL;
        for _ in 0..6 {
            now += cool;
            let probe = b.admit(now).expect("probe after the cool-down");
            b.record(probe, Outcome::TransportFailed("reset".into()), now);
            cool = (cool * 2).min(COOL * MAX_COOL_DOWN_FACTOR);
            let rejected = b.admit(now).unwrap_err();
            assert_eq!(rejected.retry_in, cool);
        }
        assert_eq!(cool, COOL * MAX_COOL_DOWN_FACTOR);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_command_probe() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        fail(&mut b, t0, "reset");
        let probe = b.admit(t0 + COOL).unwrap();
        b.abandon(probe);
        assert!(b.admit(t0 + COOL).unwrap().probe);
        // Abandoning an ordinary command changes nothing.
        let mut closed = breaker(2);
        let ticket = closed.admit(t0).unwrap();
        closed.abandon(ticket);
        assert_eq!(closed.state(), BreakerState::Closed);
    }

    #[test]
    fn a_late_failure_of_a_command_sent_before_it_opened_is_not_a_failed_probe() {
        let t0 = Instant::now();
        let mut b = breaker(1);
        let early = b.admit(t0).unwrap();
        fail(&mut b, t0, "reset");
        let probe = b.admit(t0 + COOL).unwrap();
        b.record(early, Outcome::TransportFailed("late".into()), t0 + COOL);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(probe, Outcome::Answered, t0 + COOL);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_failures_disables_it() {
        let t0 = Instant::now();
        let mut b = breaker(0);
        for _ in 0..100 {
            fail(&mut b, t0, "reset");
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
