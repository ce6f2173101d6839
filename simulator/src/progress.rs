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
    /// A line on stderr every [`LINE_EVERY`] (a log).
    Lines,
}

impl Progress {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn for_stderr() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// How often a progress line is written.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// A run's progress: its phase, and how far it is through it.
#[derive(Debug)]
pub struct Meter {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    lines: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    /// A meter shown as `how` says.
    pub fn new(how: Progress) -> Self {
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
        let lines = (how == Progress::Lines).then(|| {
            let bar = bar.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || write_lines(&bar, &stop))
        });
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

/// Every [`LINE_EVERY`] until `stop`: `progress: PHASE POS/LEN (RATE/s)` on stderr, when the
/// phase has moved since the last line.
fn write_lines(bar: &ProgressBar, stop: &AtomicBool) {
    let mut last = (String::new(), u64::MAX);
    let started = Instant::now();
    loop {
        let wake = Instant::now() + LINE_EVERY;
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
        eprintln!(
            "progress: {message} {position}/{total} ({rate:.0}/s, {:.0} s in)",
            started.elapsed().as_secs_f64()
        );
        last = (message, position);
    }
}
