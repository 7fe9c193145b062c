//! Progress on long work (rollout status, drain, benchmarks): a bar or a
//! spinner with the elapsed time, drawn on standard error when that is a
//! terminal and not at all when it is not, so pipes, logs and scripts get
//! only the results. indicatif draws; this module says what, and prints
//! result lines without tearing the bar.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::commands::emit;

/// How often a spinner turns without news.
const TICK: Duration = Duration::from_millis(120);

/// A bar or spinner on the terminal; drawing nothing off one.
#[derive(Debug)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar of `total` steps: `[elapsed] ███░░ 3/10 what`.
    pub fn bar(total: usize, what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        Progress(bar)
    }

    /// A spinner with a message that changes: `⠋ [elapsed] message`.
    pub fn spinner(message: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(TICK);
        Progress(bar)
    }

    /// Steps done so far.
    pub fn set(&self, done: usize) {
        self.0.set_position(done as u64);
    }

    pub fn message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }

    /// Print a result line on standard output, the bar out of its way.
    pub fn say(&self, line: &str) {
        self.0.suspend(|| emit(line));
    }

    /// Print a line on standard error, the bar out of its way.
    pub fn warn(&self, line: &str) {
        self.0.suspend(|| eprintln!("{line}"));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_only_on_a_terminal() {
        use std::io::IsTerminal;
        let off = !std::io::stderr().is_terminal();
        let bar = Progress::bar(3, "pods");
        bar.set(2);
        assert_eq!(bar.0.is_hidden(), off);
        let spinner = Progress::spinner("waiting");
        spinner.message("still waiting");
        assert_eq!(spinner.0.is_hidden(), off);
    }
}
