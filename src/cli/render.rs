//! Everything the CLI prints: the one error renderer (each problem, then
//! what to do about it), the summaries and tables of each command, and JSON.
//!
//! Summaries and notes go to stderr; stdout carries only what a script may
//! want (reports, key ids, the inspect table, JSON). Not for deciding
//! anything: the commands and `airlock::ops` do that and hand over values.
//!
//! Every value that can come from a bundle, an archive or a registry is
//! printed through [`Shown`], which escapes control characters, so it cannot
//! forge a line ("OK … signed by …") or send terminal escapes. Errors escape
//! their own fields. JSON needs nothing: serde escapes it.
//!
//! With `--json`, standard output carries exactly one JSON object per run:
//! the report, the report with an `error` (import), or an error alone; each
//! has `"version": JSON_VERSION` (docs/json.md lists every field).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::BinaryBytes;

use airlock::bundle::VerifyReport;
use airlock::error::Shown;
use airlock::ops::import::ImportReport;
use airlock::ops::keygen::KeyFiles;
use airlock::ops::repair::RepairReport;
use airlock::ops::PackSummary;
use airlock::Error;

use super::args::OutputArgs;

/// `println!` that does not panic: when standard output is closed (`| head
/// -1`), the process ends as a SIGPIPE death would; see [`out_line`].
/// `eprintln!` that cannot panic: a closed or full standard error loses the
/// line (there is nowhere left to say anything) but never aborts the work.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

macro_rules! outln {
    () => {
        out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        out_line(format_args!($($arg)*))
    };
}

mod inspect;
pub use inspect::inspection;

/// Writes one line to standard output. A closed pipe ends the process
/// quietly with the status of a SIGPIPE death (141 in a shell), as other
/// Unix tools end; any other write error is reported and exits 1.
///
/// SIGPIPE stays ignored for the process (Rust's default): airlock writes to
/// credential-helper pipes, and a helper that exits early is an error to
/// report, not a reason to die. Only standard output gets this treatment.
pub fn out_line(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            die_of_closed_stdout();
        }
        let _ = writeln!(
            std::io::stderr(),
            "airlock: error: write to standard output: {e}"
        );
        std::process::exit(1);
    }
}

/// True for a write to standard output that failed because its reader is
/// gone (`pack -o - | head -c 100`).
pub fn is_closed_stdout(e: &Error) -> bool {
    matches!(e, Error::Io { source, path, .. }
        if source.kind() == std::io::ErrorKind::BrokenPipe
            && path == std::path::Path::new("standard output"))
}

/// Ends the process as SIGPIPE's default action would, without a message.
pub fn die_of_closed_stdout() -> ! {
    // SAFETY: resetting a signal's disposition and raising it are
    // async-signal-safe libc calls with no memory effects on this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached on Unix; the shell's status for a SIGPIPE death otherwise.
    std::process::exit(128 + libc::SIGPIPE)
}

/// The one error renderer: each problem, then what to do about it.
pub fn error(e: &Error) {
    let mut err = std::io::stderr().lock();
    match e {
        Error::Many(list) => {
            let _ = writeln!(err, "airlock: {} problems:", list.len());
            for (i, item) in list.iter().enumerate() {
                let _ = writeln!(err, "  {}. {item}", i + 1);
                if let Some(h) = item.hint() {
                    let _ = writeln!(err, "     hint: {}", Shown(h));
                }
            }
        }
        e => {
            let _ = writeln!(err, "airlock: error: {e}");
            // A hint is one line, and may name a file from the input.
            if let Some(h) = e.hint() {
                let _ = writeln!(err, "  hint: {}", Shown(h));
            }
        }
    }
}

/// The version of every `--json` output. Adding a field keeps it;
/// renaming, removing or retyping one raises it.
pub const JSON_VERSION: u32 = 1;

/// Set once a JSON object is on standard output: a failure after it does
/// not print a second one.
static JSON_PRINTED: AtomicBool = AtomicBool::new(false);

/// A report as printed: its fields after `version`, and the error when the
/// command failed after producing it.
#[derive(serde::Serialize)]
struct Versioned<'a, T> {
    version: u32,
    #[serde(flatten)]
    report: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorJson>,
}

/// An error as `--json` shows it: its message and hint as the text renderer
/// prints them, and a stable `kind` to branch on.
#[derive(serde::Serialize)]
struct ErrorJson {
    kind: &'static str,
    message: String,
    hint: Option<String>,
    /// For `many`: each problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ErrorJson>,
}

impl ErrorJson {
    fn of(e: &Error) -> ErrorJson {
        match e {
            Error::Many(list) => ErrorJson {
                kind: e.kind(),
                message: format!("{} problems", list.len()),
                hint: None,
                errors: list.iter().map(ErrorJson::of).collect(),
            },
            e => ErrorJson {
                kind: e.kind(),
                message: e.to_string(),
                hint: e.hint(),
                errors: Vec::new(),
            },
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    JSON_PRINTED.store(true, Ordering::SeqCst);
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
}

/// A report as `--json` prints it: `version` first, then its fields.
pub fn json<T: serde::Serialize>(value: &T) {
    print_json(&Versioned {
        version: JSON_VERSION,
        report: value,
        error: None,
    });
}

/// A report of work that ended in `e` (an import with failed images): one
/// object with both, so a script reads what did go in.
pub fn json_with_error<T: serde::Serialize>(value: &T, e: &Error) {
    print_json(&Versioned {
        version: JSON_VERSION,
        report: value,
        error: Some(ErrorJson::of(e)),
    });
}

/// With `--json`, a failure is a JSON object on stdout as well as the text
/// on stderr: `{"version": 1, "error": {…}}`, unless the command already
/// printed its report with the error in it.
pub fn error_json(e: &Error) {
    if !JSON_PRINTED.load(Ordering::SeqCst) {
        print_json(&Failed {
            version: JSON_VERSION,
            error: ErrorJson::of(e),
        });
    }
}

/// A failure with no report: `version`, then the error.
#[derive(serde::Serialize)]
struct Failed {
    version: u32,
    error: ErrorJson,
}

/// clap's refusal of the command line, as a JSON error of kind `usage`:
/// its first paragraph is the message, its `tip:` the hint.
pub fn usage_error_json(e: &clap::Error) {
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let hint = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .map(str::to_string)
        .unwrap_or_else(|| "see `airlock --help` for how to call it".into());
    print_json(&Failed {
        version: JSON_VERSION,
        error: ErrorJson {
            kind: "usage",
            message: message.trim_start_matches("error: ").to_string(),
            hint: Some(hint),
            errors: Vec::new(),
        },
    });
}

/// Bytes for standard output as they are (a completion script, a man
/// page), with the closed-pipe handling of [`out_line`].
pub fn raw(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    outln!("{}", text.trim_end_matches('\n'));
}

/// A command's report as `--json` and `--quiet` ask: JSON on stdout, the
/// text form, or nothing.
pub fn report<T: serde::Serialize>(out: &OutputArgs, value: &T, text: impl FnOnce(&T)) {
    if out.json {
        json(value);
    } else if !out.quiet {
        text(value);
    }
}

/// What opening a bundle found and did (volumes repaired, files out of
/// order). Each note is one line, naming files from the input.
pub fn notices(notes: &[String]) {
    for note in notes {
        errln!("note: {}", Shown(note));
    }
}

pub(super) fn size(bytes: u64) -> BinaryBytes {
    BinaryBytes(bytes)
}

pub fn keygen(files: &KeyFiles) {
    outln!("{}", files.key_id);
    errln!(
        "wrote private key {} (keep it secret) and public key {}",
        Shown(files.private.display()),
        Shown(files.public.display())
    );
}

pub fn packed(s: &PackSummary) {
    errln!(
        "packed {} image(s), {} blob(s), {} into {}{}",
        s.images.len(),
        s.blobs,
        size(s.bytes),
        Shown(s.output.display()),
        if s.signed_by.is_empty() {
            ", unsigned".to_string()
        } else {
            format!(", signed by {}", list_or(&s.signed_by, ""))
        }
    );
    if let Some(d) = &s.delta {
        errln!(
            "delta: carries {} blob(s), {}; expects {} blob(s), {} from {}",
            s.blobs,
            size(s.bytes),
            d.expected_count,
            size(d.expected_bytes),
            delta_bases(d)
        );
    }
}

/// The bases a delta names, for one line.
pub(super) fn delta_bases(d: &airlock::bundle::DeltaReport) -> String {
    let labels: Vec<String> = d
        .bases
        .iter()
        .map(|b| Shown(b.label()).to_string())
        .collect();
    labels.join(", ")
}

/// `pack --dry-run`: each image that would be packed, then the totals.
pub fn pack_planned(s: &PackSummary) {
    for i in &s.images {
        let name = i.name.as_deref().unwrap_or("(referrer)");
        outln!(
            "would pack {} {} from {}",
            Shown(name),
            i.digest.short(),
            Shown(&i.source)
        );
    }
    outln!(
        "would pack {} image(s), {} blob(s), {} into {}",
        s.images.len(),
        s.blobs,
        size(s.bytes),
        Shown(s.output.display())
    );
}

pub fn verified(report: &VerifyReport) {
    outln!(
        "OK: {} image(s), {} blob(s), {} checked; {}",
        report.images,
        report.blobs,
        size(report.bytes),
        match &report.signed_by {
            Some(k) => format!("signed by {}", Shown(k)),
            None => "signature NOT checked (--allow-unsigned)".into(),
        }
    );
    if let Some(d) = &report.delta {
        outln!(
            "delta: expects {} blob(s), {} from {}; {}",
            d.expected_count,
            size(d.expected_bytes),
            delta_bases(d),
            if d.supplied_by.is_empty() {
                "not checked against the bases (--with BASE checks)".to_string()
            } else {
                format!("all supplied by {}", list_or(&d.supplied_by, ""))
            }
        );
    }
}

/// One line per image (`pushed`, `exists`, `failed`, `would push`), a line
/// per tag the import moved, a warning on stderr for each tag a dry run
/// would move, then the totals.
pub fn imported(report: &ImportReport) {
    pushed(report, "import")
}

/// `copy` into a registry: the same report as an import's.
pub fn copied(report: &ImportReport) {
    pushed(report, "copy")
}

fn pushed(report: &ImportReport, command: &str) {
    for i in &report.images {
        let why = i
            .error
            .as_deref()
            .map(|e| format!(": {}", Shown(e)))
            .unwrap_or_default();
        // Padded as a string: `Shown` writes through, ignoring widths.
        outln!(
            "{:10} {} -> {}{why}",
            Shown(&i.status).to_string(),
            Shown(&i.source),
            Shown(&i.target)
        );
    }
    for i in &report.images {
        if let Some(old) = &i.tag_moved_from {
            outln!("moved tag {} from {old} to {}", Shown(&i.target), i.digest);
        }
    }
    for i in &report.images {
        if let Some(old) = &i.tag_moves_from {
            errln!(
                "warning: tag {} names {old} now; this {command} would move it to {}",
                Shown(&i.target),
                i.digest
            );
        }
    }
    let (verb, mounted, sent) = if report.dry_run {
        ("to push", "to mount", "would be sent")
    } else {
        ("pushed", "mounted", "sent")
    };
    outln!(
        "{}: {} blob(s) {verb}, {} {mounted}, {} already there; {} of {} {sent}",
        if report.dry_run { "dry run" } else { command },
        report.blobs.pushed,
        report.blobs.mounted,
        report.blobs.existed,
        size(report.bytes_pushed),
        size(report.bytes_total),
    );
}

/// The images an import could not push, with the reason, on stderr: for
/// `-q` and `--json`, whose output does not list them as text.
pub fn import_failures(report: &ImportReport) {
    for i in report.failures() {
        errln!(
            "failed {} -> {}: {}",
            Shown(&i.source),
            Shown(&i.target),
            Shown(i.error.as_deref().unwrap_or("no reason given"))
        );
    }
}

pub fn repaired(report: &RepairReport) {
    if report.rewritten.is_empty() && report.moved.is_empty() {
        if report.parity {
            errln!("nothing to repair: every volume and parity file checks out");
        } else {
            errln!("nothing to repair: the bundle checks out (it has no parity)");
        }
    }
    for line in &report.moved {
        errln!("moved {}", Shown(line));
    }
    for line in &report.rewritten {
        errln!("rewrote {}", Shown(line));
    }
    if report.shards_rebuilt > 0 {
        errln!(
            "repaired: {} shard(s) rebuilt; the bundle checks out",
            report.shards_rebuilt
        );
    } else if !report.rewritten.is_empty() || !report.moved.is_empty() {
        errln!("repaired: the bundle checks out");
    }
}

/// What `export` reports.
#[derive(serde::Serialize)]
pub struct Exported {
    #[serde(rename = "image_count")]
    pub images: usize,
    pub to: String,
}

pub fn man_pages_written(n: usize, dir: &Path) {
    errln!("wrote {n} man page(s) into {}", Shown(dir.display()));
}

pub fn exported(e: &Exported) {
    errln!("exported {} image(s) to {}", e.images, Shown(&e.to));
}

/// `a, b, c` (each escaped), or `empty` for an empty list.
pub(super) fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        let shown: Vec<String> = items.iter().map(|i| Shown(i).to_string()).collect();
        shown.join(", ")
    }
}

/// `cache du`: one line of totals.
pub fn cache_usage(u: &airlock::ops::cache::Usage) {
    outln!(
        "{}: {} in {} blob(s), {} partial download(s) of {}",
        Shown(&u.cache),
        size(u.bytes),
        u.entries,
        u.partial,
        size(u.partial_bytes)
    );
}

/// `cache ls`: a line per entry, least recently used first.
pub fn cache_listing(list: &[airlock::ops::cache::Listed]) {
    for e in list {
        outln!(
            "{} {:>12} {}{}",
            e.last_used,
            e.size,
            e.digest,
            if e.partial { " (partial)" } else { "" }
        );
    }
}

pub fn cache_pruned(p: &airlock::ops::cache::Pruned) {
    outln!(
        "{}: removed {} entr{} ({}); {} left ({})",
        Shown(&p.cache),
        p.removed,
        if p.removed == 1 { "y" } else { "ies" },
        size(p.removed_bytes),
        p.left,
        size(p.left_bytes)
    );
}

/// `inventory`'s summary, on stderr (the document itself is the output).
pub fn inventoried(inv: &airlock::model::inventory::Inventory, output: &Path) {
    let bytes: u64 = inv.blobs.iter().map(|b| b.size).sum();
    let to = if output == Path::new("-") {
        "standard output".to_string()
    } else {
        Shown(output.display()).to_string()
    };
    errln!(
        "inventory: {} image(s), {} blob(s), {} listed into {to}",
        inv.images.len(),
        inv.blobs.len(),
        size(bytes),
    );
}

/// `diff`'s report on stdout: one group per kind of change, each line an
/// image, then the count unchanged and what a delta would carry.
pub fn diffed(d: &airlock::ops::diff::Diff) {
    let name = |n: &Option<String>| match n {
        Some(n) => Shown(n).to_string(),
        None => "(untagged)".to_string(),
    };
    outln!("--- A: {}", Shown(&d.a));
    outln!("+++ B: {}", Shown(&d.b));
    if !d.added.is_empty() {
        outln!("added ({}):", d.added.len());
        for i in &d.added {
            outln!("  + {}  {}", name(&i.name), i.digest);
        }
    }
    if !d.removed.is_empty() {
        outln!("removed ({}):", d.removed.len());
        for i in &d.removed {
            outln!("  - {}  {}", name(&i.name), i.digest);
        }
    }
    if !d.changed.is_empty() {
        outln!("changed ({}):", d.changed.len());
        for c in &d.changed {
            outln!("  ~ {}  {} -> {}", Shown(&c.name), c.from, c.to);
        }
    }
    outln!("unchanged: {} image(s)", d.unchanged_count);
    outln!(
        "B holds {} blob(s), {} ({} bytes), that A lacks: what a delta from A to B carries, with every manifest of B",
        d.delta_blob_count,
        size(d.delta_bytes),
        d.delta_bytes
    );
}

/// The line `serve` prints once it listens (on stderr: stdout stays free).
pub fn serving(view: &airlock::serve::View, addr: std::net::SocketAddr) {
    errln!(
        "airlock: serving {} tags in {} repositories from {} bundle(s) on {addr}",
        view.tag_count(),
        view.repos().len(),
        view.bundle_count()
    );
}
