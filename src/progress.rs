//! Byte progress on stderr; never on stdout, which may carry data.
//!
//! On a terminal: a total bar (bytes, rate, ETA) and a bar per large blob in
//! flight. Otherwise (CI logs, pipes): a plain line every few seconds and one
//! at the end. Nothing at all with `--quiet`.
//!
//! Not for results: summaries and reports are the CLI's to print. The plain
//! line keeps its own fixed `MiB` figures (one decimal) so that log lines
//! stay comparable; bars use indicatif's units.

use std::io::{self, IsTerminal, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Blobs at least this large get a bar of their own on a terminal.
const BLOB_BAR_MIN: u64 = 8 * 1024 * 1024;
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// A total on a terminal: what is done, of how much, how fast, how long yet.
const TOTAL_BAR: &str = "{msg:6} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    /// Per-blob bars also count into their parent's total.
    parent: Option<ProgressBar>,
    multi: Option<MultiProgress>,
    plain: Option<Arc<Plain>>,
    /// Where [`Progress::note`] goes; none when quiet.
    notes: Option<Notes>,
}

#[derive(Clone)]
enum Notes {
    /// Above the bars of a terminal.
    Bars(MultiProgress),
    Stderr,
}

struct Plain {
    stop: AtomicBool,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("template is valid")
        .progress_chars("=> ")
}

impl Progress {
    pub fn new(total: u64, label: &str, quiet: bool) -> Progress {
        if quiet {
            return Progress::hidden();
        }
        if io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style(TOTAL_BAR));
            bar.set_message(label.to_string());
            return Progress {
                bar,
                parent: None,
                multi: Some(multi.clone()),
                plain: None,
                notes: Some(Notes::Bars(multi)),
            };
        }
        // Not a terminal: count silently and report every few seconds.
        let bar = ProgressBar::hidden();
        bar.set_length(total);
        bar.set_message(label.to_string());
        let plain = Arc::new(Plain {
            stop: AtomicBool::new(false),
        });
        let (b, p, label) = (bar.clone(), plain.clone(), label.to_string());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut last = Instant::now();
            while !p.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last.elapsed() >= PLAIN_EVERY && !p.stop.load(Ordering::Relaxed) {
                    last = Instant::now();
                    eprintln!(
                        "{}",
                        plain_line(&label, b.position(), total, start.elapsed())
                    );
                }
            }
        });
        Progress {
            bar,
            parent: None,
            multi: None,
            plain: Some(plain),
            notes: Some(Notes::Stderr),
        }
    }

    /// Another total shown beside this one (in the same set of bars on a
    /// terminal).
    pub fn sibling(&self, total: u64, label: &str, quiet: bool) -> Progress {
        match &self.multi {
            Some(m) if !quiet => {
                let bar = m.add(ProgressBar::new(total));
                bar.set_style(style(TOTAL_BAR));
                bar.set_message(label.to_string());
                Progress {
                    bar,
                    parent: None,
                    multi: Some(m.clone()),
                    plain: None,
                    notes: Some(Notes::Bars(m.clone())),
                }
            }
            _ => Progress::new(total, label, quiet),
        }
    }

    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            parent: None,
            multi: None,
            plain: None,
            notes: None,
        }
    }

    /// A bar for one blob under this one (on a terminal, for large blobs);
    /// its bytes count into this bar too.
    pub fn child(&self, size: u64, label: &str) -> Progress {
        let bar = match &self.multi {
            Some(m) if size >= BLOB_BAR_MIN => {
                let b = m.add(ProgressBar::new(size));
                b.set_style(style(
                    "  {msg:14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                ));
                b.set_message(label.to_string());
                b
            }
            _ => ProgressBar::hidden(),
        };
        Progress {
            bar,
            parent: Some(self.bar.clone()),
            multi: None,
            plain: None,
            notes: self.notes.clone(),
        }
    }

    /// A line for the user about the work in progress (waiting for another
    /// process, say), above the bars or on stderr; nothing when quiet.
    pub fn note(&self, line: &str) {
        match &self.notes {
            Some(Notes::Bars(m)) => {
                let _ = m.println(format!("note: {line}"));
            }
            Some(Notes::Stderr) => eprintln!("note: {line}"),
            None => {}
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(p) = &self.parent {
            p.inc(n);
        }
    }

    pub fn finish(&self) {
        if let Some(p) = &self.plain {
            p.stop.store(true, Ordering::Relaxed);
            let total = self.bar.length().unwrap_or(0);
            eprintln!(
                "{}",
                plain_line(
                    &self.bar.message(),
                    self.bar.position(),
                    total,
                    self.bar.elapsed()
                )
            );
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
        self.bar.finish_and_clear();
    }

    /// Counts bytes as they are read through `r`.
    pub fn wrap<R: Read>(&self, r: R) -> Counted<R> {
        Counted {
            inner: r,
            progress: self.clone(),
        }
    }
}

fn plain_line(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let eta = if rate > 0.0 && total > done {
        format!(", eta {:.0}s", (total - done) as f64 / rate)
    } else {
        String::new()
    };
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "{label}: {:.1} of {:.1} MiB ({pct}%), {:.1} MiB/s{eta}",
        mib(done),
        mib(total),
        mib(rate as u64)
    )
}

pub struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_show_amount_rate_and_eta() {
        let line = plain_line("pull", 50 << 20, 100 << 20, Duration::from_secs(5));
        assert_eq!(line, "pull: 50.0 of 100.0 MiB (50%), 10.0 MiB/s, eta 5s");
    }
}

/// Prints one line on standard error, above any progress bar that is
/// drawn, so that log lines and notes never tear a bar. The logger
/// (`cli/`) and retry notices go through here.
pub fn eprint_line(line: &str) {
    eprintln!("{line}");
}
