//! A progress line for long batch work (`emberline rebuild`): a bar, records done of the
//! total, the rate and the time left. On a terminal it redraws one line on standard error;
//! elsewhere (a log collector, a CI job) it becomes a log line every few seconds.

use std::io::Write as _;
use std::time::{Duration, Instant};

/// Width of the bar, characters.
const BAR: usize = 24;
/// How often a log line is written when standard error is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of `total` units of work, started now.
pub(crate) struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    tty: bool,
    last_log: Option<Instant>,
}

impl Progress {
    pub(crate) fn new(what: &'static str, total: u64) -> Self {
        Self {
            what,
            total,
            started: Instant::now(),
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            last_log: None,
        }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows that `done` units are done.
    pub(crate) fn show(&mut self, done: u64) {
        let line = line(self.what, done, self.total, self.started.elapsed());
        if self.tty {
            let mut err = std::io::stderr().lock();
            // A progress line that cannot be drawn is not worth failing the work for.
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        } else if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_log = Some(Instant::now());
            tracing::info!("{line}");
        }
    }

    /// Ends the progress line (on a terminal, moves past it).
    pub(crate) fn finish(&mut self, done: u64) {
        self.show(done);
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `[#####-----]  1 234 / 5 000 records  617/s  ETA 0:06`.
pub(crate) fn line(what: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (fraction * BAR as f64).round() as usize;
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR - filled));
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if done >= total {
        "done".to_owned()
    } else if rate > 0.0 {
        format!("ETA {}", clock((total - done) as f64 / rate))
    } else {
        "ETA –".to_owned()
    };
    format!(
        "[{bar}] {:>3.0} %  {} / {} {what}  {}/s  {eta}",
        fraction * 100.0,
        grouped(done),
        grouped(total),
        grouped(rate.round() as u64),
    )
}

/// `1234567` as `1 234 567`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Seconds as `h:mm:ss` or `m:ss`.
fn clock(secs: f64) -> String {
    let s = secs.ceil() as u64;
    let (h, m, s) = (s / 3_600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_share_the_rate_and_the_time_left() {
        let l = line("records", 2_500, 10_000, Duration::from_secs(5));
        assert!(l.starts_with("[######------------------]  25 %"), "{l}");
        assert!(l.contains("2 500 / 10 000 records"), "{l}");
        assert!(l.contains("500/s"), "{l}");
        assert!(l.ends_with("ETA 0:15"), "{l}");
    }

    #[test]
    fn finished_and_empty_work_say_done() {
        assert!(line("records", 7, 7, Duration::from_secs(1)).ends_with("done"));
        assert!(line("records", 0, 0, Duration::ZERO).contains("100 %"));
        assert!(line("records", 0, 9, Duration::ZERO).ends_with("ETA –"));
    }

    #[test]
    fn long_waits_read_in_hours() {
        assert_eq!(clock(3_725.0), "1:02:05");
        assert_eq!(clock(59.2), "1:00");
        assert_eq!(grouped(1_234_567), "1 234 567");
        assert_eq!(grouped(999), "999");
    }
}
