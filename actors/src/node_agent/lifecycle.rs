//! Where one pod is in its life on this node, as an explicit state machine:
//! the agent keeps a [`Life`] per pod and asks [`Life::on`] what an event
//! does to it; the compiler checks that every state answers every event.
//! Pure: times are arguments.
//!
//! ```text
//!   Running ──Terminate──► Stopping ──Stopped──► Finishing ──(removal seen)──► gone
//!      │                      │   ▲ Shorten          │ (removed meanwhile)
//!      └──Removed──► Stopping{removed} ──Stopped──► gone
//! ```

/// A later delete must shorten the time left by at least this much to
/// stop the containers again, sooner.
pub const SHORTEN_MIN_MS: u64 = 500;

/// One pod's state on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Its containers run, or are started, as its spec says.
    Running,
    /// Its containers are being stopped: SIGTERM sent, SIGKILL at
    /// `kill_at_ms` at the latest. `removed`: the object is gone from the
    /// store already (nothing to write when they have stopped).
    Stopping { kill_at_ms: u64, removed: bool },
    /// Every container has stopped; its last status and its removal are
    /// (to be) written, after a bounded wait for the exits.
    Finishing,
}

/// What happened to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its containers must stop (a graceful delete, the agent's stop) by
    /// this time at the latest.
    Terminate { kill_at_ms: u64 },
    /// Its removal from the store was seen; if still running, its
    /// containers must stop by this time.
    Removed { kill_at_ms: u64 },
    /// Every container stop has returned.
    Stopped,
}

/// What the agent does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Stop the containers and release the pod (first time).
    Stop,
    /// Stop the running containers again, with the shorter grace.
    StopSooner,
    /// Write the last status, then remove the pod from the store.
    Finish,
    /// Forget the pod: nothing of it is left here or to be written.
    Forget,
}

impl Life {
    /// The state after `event`, and what to do.
    pub fn on(self, event: Event) -> (Life, Action) {
        use Action as A;
        use Event as E;
        match (self, event) {
            (Life::Running, E::Terminate { kill_at_ms }) => (
                Life::Stopping {
                    kill_at_ms,
                    removed: false,
                },
                A::Stop,
            ),
            (Life::Running, E::Removed { kill_at_ms }) => (
                Life::Stopping {
                    kill_at_ms,
                    removed: true,
                },
                A::Stop,
            ),
            (Life::Running, E::Stopped) => (self, A::Nothing),
            (
                Life::Stopping {
                    kill_at_ms,
                    removed,
                },
                E::Terminate { kill_at_ms: sooner },
            ) => {
                if sooner.saturating_add(SHORTEN_MIN_MS) <= kill_at_ms {
                    (
                        Life::Stopping {
                            kill_at_ms: sooner,
                            removed,
                        },
                        A::StopSooner,
                    )
                } else {
                    (self, A::Nothing)
                }
            }
            (Life::Stopping { kill_at_ms, .. }, E::Removed { .. }) => (
                Life::Stopping {
                    kill_at_ms,
                    removed: true,
                },
                A::Nothing,
            ),
            (Life::Stopping { removed: true, .. }, E::Stopped) => (self, A::Forget),
            (Life::Stopping { removed: false, .. }, E::Stopped) => (Life::Finishing, A::Finish),
            (Life::Finishing, E::Removed { .. }) => (self, A::Forget),
            (Life::Finishing, E::Terminate { .. } | E::Stopped) => (self, A::Nothing),
        }
    }

    /// Whether its containers may be started (and synced, probed,
    /// reported as running).
    pub fn is_running(self) -> bool {
        self == Life::Running
    }

    /// Whether its containers are stopped or being stopped.
    pub fn is_terminating(self) -> bool {
        !self.is_running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let stopping = |kill_at_ms, removed| Life::Stopping {
            kill_at_ms,
            removed,
        };
        let t = |kill_at_ms| Event::Terminate { kill_at_ms };
        let r = |kill_at_ms| Event::Removed { kill_at_ms };
        // (from, event, to, action)
        let table = [
            (
                Life::Running,
                t(30_000),
                stopping(30_000, false),
                Action::Stop,
            ),
            (Life::Running, r(5_000), stopping(5_000, true), Action::Stop),
            (
                Life::Running,
                Event::Stopped,
                Life::Running,
                Action::Nothing,
            ),
            // a later delete shortens the grace: stop again, sooner…
            (
                stopping(30_000, false),
                t(10_000),
                stopping(10_000, false),
                Action::StopSooner,
            ),
            // …but not for less than half a second, and never later
            (
                stopping(30_000, false),
                t(29_600),
                stopping(30_000, false),
                Action::Nothing,
            ),
            (
                stopping(30_000, false),
                t(60_000),
                stopping(30_000, false),
                Action::Nothing,
            ),
            (
                stopping(30_000, false),
                r(0),
                stopping(30_000, true),
                Action::Nothing,
            ),
            (
                stopping(30_000, false),
                Event::Stopped,
                Life::Finishing,
                Action::Finish,
            ),
            (
                stopping(30_000, true),
                Event::Stopped,
                stopping(30_000, true),
                Action::Forget,
            ),
            (
                stopping(30_000, true),
                t(1_000),
                stopping(1_000, true),
                Action::StopSooner,
            ),
            (Life::Finishing, r(0), Life::Finishing, Action::Forget),
            (Life::Finishing, t(0), Life::Finishing, Action::Nothing),
            (
                Life::Finishing,
                Event::Stopped,
                Life::Finishing,
                Action::Nothing,
            ),
        ];
        for (from, event, to, action) in table {
            assert_eq!(from.on(event), (to, action), "{from:?} on {event:?}");
        }
    }
}
