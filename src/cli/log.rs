//! The logger behind `-v`: `log` records from airlock at warn (default),
//! info (`-v`: retries, and each registry request's method, URL, status
//! and time) or debug (`-vv`: request and response headers, secrets
//! redacted by `registry::client`); `RUST_LOG`, when set, adds env_logger
//! directives (`RUST_LOG=debug`, `RUST_LOG=airlock=trace,ureq=debug`), and
//! without `-v` it alone decides.
//!
//! Lines go to standard error through `airlock::progress::eprint_line`, so
//! they do not tear a progress bar, and never to standard output, which
//! carries reports. Not for user-facing results or errors: those are
//! `render`'s.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// env_logger's filter (its directive syntax), our output.
struct Logger {
    filter: env_logger::Logger,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.filter.matches(record) && !leaks(record) {
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            airlock::progress::eprint_line(&format!("airlock: {level}: {}", record.args()));
        }
    }

    fn flush(&self) {}
}

/// Trace records of the HTTP and TLS crates: ureq's trace level dumps
/// each request raw, `Authorization` header and all, so no filter may let
/// a password or token out that way. Their debug level redacts headers.
fn leaks(record: &Record) -> bool {
    record.level() == Level::Trace && !record.target().starts_with("airlock")
}

/// Installs the logger for `verbose` times `-v`. Other crates (ureq,
/// rustls) stay at warn unless `RUST_LOG` names them: their debug output is
/// for debugging them, not airlock.
pub fn init(verbose: u8) {
    let ours = match verbose {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    };
    let rust_log = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let mut builder = env_logger::Builder::new();
    builder.filter_level(LevelFilter::Warn);
    // Without -v, RUST_LOG alone decides (RUST_LOG=debug includes airlock).
    if verbose > 0 || rust_log.is_none() {
        builder.filter_module("airlock", ours);
    }
    if let Some(spec) = &rust_log {
        // A directive for airlock itself replaces the one -v made.
        builder.parse_filters(spec);
    }
    let filter = builder.build();
    let max = filter.filter();
    // Fails only if a logger is installed already, which main does not do.
    if log::set_boxed_logger(Box::new(Logger { filter })).is_ok() {
        log::set_max_level(max);
    }
}
