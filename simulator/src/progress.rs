//! Progress on stderr (issue 28): a bar on a terminal (indicatif), and where stderr is not a
//! terminal (a CI log, a journal) a plain line every few seconds, so that a long run shows it is
//! alive without filling the log with a bar's redraws.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How a run shows its progress.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub enum Progress {
    /// Nothing.
    #[default]
    Off,
    /// A bar on stderr, redrawn in place (a terminal).
    Bar,
    /// A line on stderr this often (a log).
    Lines(Duration),
}

impl Progress {
    /// A bar when stderr is a terminal; otherwise a line every [`LINE_EVERY`], or every
    /// `TREECAST_PROGRESS_SECONDS` seconds when that variable holds a whole number from 1.
    pub fn for_stderr() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Self::Bar;
        }
        let every = std::env::var("TREECAST_PROGRESS_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s >= 1)
            .map_or(LINE_EVERY, Duration::from_secs);
        Self::Lines(every)
    }
}

/// How often a progress line is written by default.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// A run's progress: its phase, and how far it is through it.
#[derive(Debug)]
pub struct Meter {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    lines: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    /// A meter shown as `how` says, on stderr.
    pub fn new(how: Progress) -> Self {
        Self::with_lines_to(how, Box::new(std::io::stderr()))
    }

    /// A meter whose lines (with [`Progress::Lines`]) go to `out`.
    fn with_lines_to(how: Progress, out: Box<dyn std::io::Write + Send>) -> Self {
        let bar = if how == Progress::Bar {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let lines = match how {
            Progress::Lines(every) => {
                let bar = bar.clone();
                let stop = Arc::clone(&stop);
                Some(std::thread::spawn(move || {
                    write_lines(&bar, &stop, every, out)
                }))
            }
            _ => None,
        };
        Self { bar, stop, lines }
    }

    /// A new phase of `len` steps.
    pub fn phase(&self, message: &'static str, len: u64) {
        self.bar.set_message(message);
        self.bar.set_length(len);
        self.bar.set_position(0);
    }

    /// `n` more steps done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Clears the bar and stops the lines.
    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(lines) = self.lines.take() {
            lines.thread().unpark();
            let _ = lines.join();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Every `every` until `stop`: `progress: PHASE POS/LEN (RATE/s, T s in)` on stderr, when the
/// phase has moved since the last line.
fn write_lines(
    bar: &ProgressBar,
    stop: &AtomicBool,
    every: Duration,
    mut out: Box<dyn std::io::Write + Send>,
) {
    let mut last = (String::new(), u64::MAX);
    let started = Instant::now();
    loop {
        let wake = Instant::now() + every;
        while Instant::now() < wake {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::park_timeout(wake.saturating_duration_since(Instant::now()));
        }
        let (message, position) = (bar.message(), bar.position());
        if message.is_empty() || (message.clone(), position) == last {
            continue;
        }
        let total = bar.length().unwrap_or(0);
        let rate = bar.per_sec();
        let _ = writeln!(
            out,
            "progress: {message} {position}/{total} ({rate:.0}/s, {:.0} s in)",
            started.elapsed().as_secs_f64()
        );
        last = (message, position);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::{Meter, Progress};

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_terminal_progress_is_a_line_every_few_moments() {
        let sink = Sink::default();
        let mut meter = Meter::with_lines_to(
            Progress::Lines(Duration::from_millis(5)),
            Box::new(sink.clone()),
        );
        meter.phase("registration", 10);
        meter.inc(3);
        std::thread::sleep(Duration::from_millis(100));
        meter.finish();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("progress: registration 3/10"), "{text}");
        // Nothing moved after the first line: no repeated lines.
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
