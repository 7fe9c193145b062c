//! The `slog` logger raft-rs wants, forwarding every record to `tracing`
//! under the target `raft`, with its key/value pairs appended to the
//! message. Records below the level `tracing` has enabled are not
//! formatted at all.

use std::fmt::{self, Write as _};

use slog::{Drain, Level, OwnedKVList, Record, Serializer, KV};

/// A `slog::Drain` that forwards to `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingDrain;

/// A root logger for raft-rs, tagged with this peer's id.
pub fn raft_logger(peer_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("peer" => peer_id))
}

/// Collects `key=value` pairs into one string.
struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        // Writing to a String cannot fail.
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn pairs(record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut p = Pairs(String::new());
    // Serializing into a String cannot fail; a failing KV impl only loses
    // its own pairs.
    let _ = record.kv().serialize(record, &mut p);
    let _ = values.serialize(record, &mut p);
    p.0
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        // `tracing` needs the level as a constant at each call site.
        macro_rules! forward {
            ($level:expr, $mac:ident) => {
                if tracing::enabled!(target: "raft", $level) {
                    tracing::$mac!(target: "raft", "{}{}", record.msg(), pairs(record, values));
                }
            };
        }
        match record.level() {
            Level::Critical | Level::Error => forward!(tracing::Level::ERROR, error),
            Level::Warning => forward!(tracing::Level::WARN, warn),
            Level::Info => forward!(tracing::Level::INFO, info),
            Level::Debug => forward!(tracing::Level::DEBUG, debug),
            Level::Trace => forward!(tracing::Level::TRACE, trace),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_pairs_do_not_fail() {
        let logger = raft_logger(7);
        slog::info!(logger, "became leader"; "term" => 3, "index" => 42u64);
        slog::debug!(logger, "dropped"; "why" => "test");
        let mut p = Pairs(String::new());
        let _ = p.emit_arguments("k", &format_args!("{}", 5));
        assert_eq!(p.0, " k=5");
    }
}
