//! SIGINT (Ctrl-C), SIGTERM and SIGHUP: each ends the run with a cleanup instead of killing
//! the demo where it stands. Listening starts before any child exists.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// A signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub name: &'static str,
    number: i32,
}

impl Received {
    /// The shell's convention for a process ended by a signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        (128 + self.number) as u8
    }
}

#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next one.
    pub async fn recv(&mut self) -> Received {
        let (name, kind) = tokio::select! {
            _ = self.interrupt.recv() => ("SIGINT", SignalKind::interrupt()),
            _ = self.terminate.recv() => ("SIGTERM", SignalKind::terminate()),
            _ = self.hangup.recv() => ("SIGHUP", SignalKind::hangup()),
        };
        Received {
            name,
            number: kind.as_raw_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let int = Received {
            name: "SIGINT",
            number: SignalKind::interrupt().as_raw_value(),
        };
        assert_eq!(int.exit_code(), 130);
        let term = Received {
            name: "SIGTERM",
            number: SignalKind::terminate().as_raw_value(),
        };
        assert_eq!(term.exit_code(), 143);
    }
}
