//! Byte progress on stderr; never on stdout, which may carry data.
//!
//! On a terminal: a total bar (bytes, rate, ETA) and a bar per large blob in
//! flight. Otherwise (CI logs, pipes): a plain line every few seconds (every
//! `AIRLOCK_PROGRESS_EVERY_MS` milliseconds if set, for tests and slow
//! logs) and one at the end. Nothing at all with `--quiet`.
//!
//! Two kinds of bytes advance a position: bytes **moved** in this run
//! ([`Progress::inc`]) and bytes that were **held** already (a cached blob,
//! a partial download, what a registry's upload session holds, a blob the
//! registry has: [`Progress::held`]). Rate and ETA count only moved bytes,
//! so a resumed run does not claim the speed of a disk read.
//!
//! Not for results: summaries and reports are the CLI's to print. The plain
//! line keeps its own fixed `MiB` figures (one decimal) so that log lines
//! stay comparable; bars use indicatif's units.

use std::io::{self, IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{
    BinaryBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState,
    ProgressStyle,
};

/// Blobs at least this large get a bar of their own on a terminal.
const BLOB_BAR_MIN: u64 = 8 * 1024 * 1024;
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// A total on a terminal: what is done, of how much, how fast, how long yet.
const TOTAL_BAR: &str = "{msg:6} [{bar:30}] {bytes}/{total_bytes} {moved_rate} eta {moved_eta}";
const BLOB_BAR: &str = "  {msg:14} [{bar:30}] {bytes}/{total_bytes} {moved_rate}";

/// The bars being drawn on this terminal, if any: [`eprint_line`] prints
/// above them. The latest set wins; a finished set draws nothing.
static LIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    /// Bytes of `bar`'s position that were held, not moved.
    held: Arc<AtomicU64>,
    /// Per-blob bars also count into their parent's total.
    parent: Option<(ProgressBar, Arc<AtomicU64>)>,
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

/// Rate of the bytes moved since the bar started.
fn moved_rate(state: &ProgressState, held: &AtomicU64) -> f64 {
    let moved = state.pos().saturating_sub(held.load(Ordering::Relaxed));
    moved as f64 / state.elapsed().as_secs_f64().max(0.001)
}

fn style(template: &str, held: &Arc<AtomicU64>) -> ProgressStyle {
    let (h1, h2) = (held.clone(), held.clone());
    ProgressStyle::with_template(template)
        .expect("template is valid")
        .with_key(
            "moved_rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", BinaryBytes(moved_rate(s, &h1) as u64));
            },
        )
        .with_key(
            "moved_eta",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = moved_rate(s, &h2);
                let left = s.len().unwrap_or(0).saturating_sub(s.pos());
                if rate > 0.0 {
                    let eta = Duration::from_secs_f64(left as f64 / rate);
                    let _ = write!(w, "{}", HumanDuration(eta));
                } else {
                    let _ = write!(w, "-");
                }
            },
        )
        .progress_chars("=> ")
}

/// How often the plain line is printed.
fn plain_every() -> Duration {
    std::env::var("AIRLOCK_PROGRESS_EVERY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map_or(PLAIN_EVERY, Duration::from_millis)
}

impl Progress {
    fn with_bar(bar: ProgressBar, held: Arc<AtomicU64>) -> Progress {
        Progress {
            bar,
            held,
            parent: None,
            multi: None,
            plain: None,
            notes: None,
        }
    }

    pub fn new(total: u64, label: &str, quiet: bool) -> Progress {
        if quiet {
            return Progress::hidden();
        }
        let held = Arc::new(AtomicU64::new(0));
        if io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style(TOTAL_BAR, &held));
            bar.set_message(label.to_string());
            *LIVE.lock().expect("not poisoned") = Some(multi.clone());
            return Progress {
                multi: Some(multi.clone()),
                notes: Some(Notes::Bars(multi)),
                ..Progress::with_bar(bar, held)
            };
        }
        // Not a terminal: count silently and report every few seconds.
        let bar = ProgressBar::hidden();
        bar.set_length(total);
        bar.set_message(label.to_string());
        let plain = Arc::new(Plain {
            stop: AtomicBool::new(false),
        });
        let (b, p, h, label) = (bar.clone(), plain.clone(), held.clone(), label.to_string());
        let every = plain_every();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut last = Instant::now();
            let tick = every.min(Duration::from_millis(100));
            while !p.stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                if last.elapsed() >= every && !p.stop.load(Ordering::Relaxed) {
                    last = Instant::now();
                    let held = h.load(Ordering::Relaxed);
                    eprint_line(&plain_line(
                        &label,
                        b.position(),
                        held,
                        total,
                        start.elapsed(),
                    ));
                }
            }
        });
        Progress {
            plain: Some(plain),
            notes: Some(Notes::Stderr),
            ..Progress::with_bar(bar, held)
        }
    }

    /// Another total shown beside this one (in the same set of bars on a
    /// terminal).
    pub fn sibling(&self, total: u64, label: &str, quiet: bool) -> Progress {
        match &self.multi {
            Some(m) if !quiet => {
                let held = Arc::new(AtomicU64::new(0));
                let bar = m.add(ProgressBar::new(total));
                bar.set_style(style(TOTAL_BAR, &held));
                bar.set_message(label.to_string());
                Progress {
                    multi: Some(m.clone()),
                    notes: Some(Notes::Bars(m.clone())),
                    ..Progress::with_bar(bar, held)
                }
            }
            _ => Progress::new(total, label, quiet),
        }
    }

    pub fn hidden() -> Progress {
        Progress::with_bar(ProgressBar::hidden(), Arc::new(AtomicU64::new(0)))
    }

    /// A bar for one blob under this one (on a terminal, for large blobs);
    /// its bytes count into this bar too.
    pub fn child(&self, size: u64, label: &str) -> Progress {
        let held = Arc::new(AtomicU64::new(0));
        let bar = match &self.multi {
            Some(m) if size >= BLOB_BAR_MIN => {
                let b = m.add(ProgressBar::new(size));
                b.set_style(style(BLOB_BAR, &held));
                b.set_message(label.to_string());
                b
            }
            _ => {
                let b = ProgressBar::hidden();
                b.set_length(size);
                b
            }
        };
        Progress {
            parent: Some((self.bar.clone(), self.held.clone())),
            notes: self.notes.clone(),
            ..Progress::with_bar(bar, held)
        }
    }

    /// A line for the user about the work in progress (waiting for another
    /// process, say), above the bars or on stderr; nothing when quiet.
    pub fn note(&self, line: &str) {
        match &self.notes {
            Some(Notes::Bars(m)) => {
                let _ = m.println(format!("note: {line}"));
            }
            Some(Notes::Stderr) => eprint_line(&format!("note: {line}")),
            None => {}
        }
    }

    /// Bytes moved in this run: they count into the rate.
    pub fn inc(&self, n: u64) {
        self.add(n, false);
    }

    /// Bytes that were there already (cached, held by the far end): they
    /// advance the position but not the rate.
    pub fn held(&self, n: u64) {
        self.add(n, true);
    }

    /// Moves this blob's position up to `pos` (never back): bytes up to
    /// there were moved in this run. For a transfer that may be restarted
    /// and re-send bytes it counted already.
    pub fn moved_to(&self, pos: u64) {
        self.inc(pos.saturating_sub(self.position()));
    }

    /// Moves this blob's position up to `pos` (never back), counting the
    /// bytes as held: an upload continued where the far end's session ends.
    pub fn held_to(&self, pos: u64) {
        self.held(pos.saturating_sub(self.position()));
    }

    fn add(&self, n: u64, held: bool) {
        if n == 0 {
            return;
        }
        if held {
            self.held.fetch_add(n, Ordering::Relaxed);
        }
        self.bar.inc(n);
        if let Some((p, parent_held)) = &self.parent {
            if held {
                parent_held.fetch_add(n, Ordering::Relaxed);
            }
            p.inc(n);
        }
    }

    /// Bytes counted so far (moved and held).
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Of [`Progress::position`], the bytes that were held already.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn finish(&self) {
        if let Some(p) = &self.plain {
            p.stop.store(true, Ordering::Relaxed);
            let total = self.bar.length().unwrap_or(0);
            eprint_line(&plain_line(
                &self.bar.message(),
                self.bar.position(),
                self.held.load(Ordering::Relaxed),
                total,
                self.bar.elapsed(),
            ));
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

/// `label: DONE of TOTAL MiB (P%), RATE MiB/s, eta Ns`, where the rate
/// counts only the bytes moved (`done` less `held`).
fn plain_line(label: &str, done: u64, held: u64, total: u64, elapsed: Duration) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done.saturating_sub(held) as f64 / secs;
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

/// Prints one line on standard error, above any progress bar that is
/// drawn, so that log lines and notes never tear a bar. The logger
/// (`cli/`) and retry notices go through here.
pub fn eprint_line(line: &str) {
    let live = LIVE.lock().expect("not poisoned").clone();
    // A closed or full stderr loses the line; it must not abort the work.
    above(live.as_ref(), || {
        let _ = writeln!(io::stderr(), "{line}");
    });
}

/// Runs `print` with the bars of `live` cleared, then draws them again
/// below what it printed.
fn above(live: Option<&MultiProgress>, print: impl FnOnce()) {
    match live {
        Some(m) => m.suspend(print),
        None => print(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_show_amount_rate_and_eta() {
        let line = plain_line("pull", 50 << 20, 0, 100 << 20, Duration::from_secs(5));
        assert_eq!(line, "pull: 50.0 of 100.0 MiB (50%), 10.0 MiB/s, eta 5s");
    }

    /// 40 MiB were in the cache: the 10 MiB moved in 5 s set the rate.
    #[test]
    fn plain_lines_rate_only_what_this_run_moved() {
        let line = plain_line(
            "pull",
            50 << 20,
            40 << 20,
            100 << 20,
            Duration::from_secs(5),
        );
        assert_eq!(line, "pull: 50.0 of 100.0 MiB (50%), 2.0 MiB/s, eta 25s");
    }

    /// A terminal that records what is done to it.
    #[derive(Clone, Debug, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn log(&self, what: String) {
            self.0.lock().unwrap().push(what);
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            if n > 0 {
                self.log(format!("up {n}"));
            }
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> io::Result<()> {
            if n > 0 {
                self.log(format!("down {n}"));
            }
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.log(format!("line {s}"));
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            // Padding to the width is not drawing.
            if !s.trim().is_empty() {
                self.log(format!("str {s}"));
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            self.log("clear".into());
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The bar is wiped before a log line and drawn again after it, so the
    /// line stands on its own above the bar.
    #[test]
    fn log_lines_go_above_a_live_bar() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let multi = MultiProgress::with_draw_target(target);
        let bar = multi.add(ProgressBar::new(100));
        bar.set_style(ProgressStyle::with_template("bar {pos}/{len}").unwrap());
        bar.set_position(40);
        bar.tick();
        screen.0.lock().unwrap().clear();
        above(Some(&multi), || screen.log("LOG LINE".into()));
        let seen = screen.0.lock().unwrap().join("\n");
        assert_eq!(seen, "clear\nLOG LINE\nstr bar 40/100");
    }

    #[test]
    fn held_bytes_advance_the_position_of_blob_and_total_but_not_the_rate() {
        let total = Progress::hidden();
        let blob = total.child(100, "b");
        blob.held_to(60);
        blob.moved_to(50); // a restarted transfer below the mark: nothing
        blob.moved_to(80);
        blob.inc(5);
        assert_eq!((blob.position(), blob.held_bytes()), (85, 60));
        assert_eq!((total.position(), total.held_bytes()), (85, 60));
        blob.held_to(100);
        assert_eq!((total.position(), total.held_bytes()), (100, 75));
    }
}
