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

use std::io::Write;
use std::path::Path;

use indicatif::BinaryBytes;

use airlock::bundle::VerifyReport;
use airlock::error::Shown;
use airlock::ops::import::ImportReport;
use airlock::ops::keygen::KeyFiles;
use airlock::ops::repair::RepairReport;
use airlock::ops::{Inspection, PackSummary};
use airlock::Error;

use super::args::OutputArgs;

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

pub fn json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
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
        eprintln!("note: {}", Shown(note));
    }
}

fn size(bytes: u64) -> BinaryBytes {
    BinaryBytes(bytes)
}

pub fn keygen(files: &KeyFiles) {
    println!("{}", files.key_id);
    eprintln!(
        "wrote private key {} (keep it secret) and public key {}",
        Shown(files.private.display()),
        Shown(files.public.display())
    );
}

pub fn packed(s: &PackSummary, key_id: Option<&str>) {
    eprintln!(
        "packed {} image(s), {} blob(s), {} into {}{}",
        s.images,
        s.blobs,
        size(s.bytes),
        Shown(s.output.display()),
        key_id
            .map(|k| format!(", signed by {}", Shown(k)))
            .unwrap_or_else(|| ", unsigned".into())
    );
}

pub fn verified(report: &VerifyReport) {
    println!(
        "OK: {} image(s), {} blob(s), {} checked; {}",
        report.images,
        report.blobs,
        size(report.bytes),
        match &report.signed_by {
            Some(k) => format!("signed by {}", Shown(k)),
            None => "signature NOT checked (--allow-unsigned)".into(),
        }
    );
}

pub fn imported(report: &ImportReport) {
    for i in &report.images {
        let why = i
            .error
            .as_deref()
            .map(|e| format!(": {}", Shown(e)))
            .unwrap_or_default();
        println!(
            "{:10} {} -> {}{why}",
            Shown(&i.status),
            Shown(&i.source),
            Shown(&i.target)
        );
    }
    let (verb, sent) = if report.dry_run {
        ("to push", "would be sent")
    } else {
        ("pushed", "sent")
    };
    println!(
        "{}: {} blob(s) {verb}, {} mounted, {} already there; {} of {} {sent}",
        if report.dry_run { "dry run" } else { "import" },
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
        eprintln!(
            "failed {} -> {}: {}",
            Shown(&i.source),
            Shown(&i.target),
            Shown(i.error.as_deref().unwrap_or("no reason given"))
        );
    }
}

pub fn repaired(report: &RepairReport) {
    if report.rewritten.is_empty() && report.moved.is_empty() {
        eprintln!("nothing to repair: every volume and parity file checks out");
    }
    for line in &report.moved {
        eprintln!("moved {}", Shown(line));
    }
    for line in &report.rewritten {
        eprintln!("rewrote {}", Shown(line));
    }
    if !report.rewritten.is_empty() {
        eprintln!(
            "repaired: {} shard(s) rebuilt; the bundle checks out",
            report.shards_rebuilt
        );
    }
}

pub fn exported(n: usize, to: &str) {
    eprintln!("exported {n} image(s) to {}", Shown(to));
}

/// The `inspect` table: the bundle, then one block per image. Every field
/// but the counts comes from the unverified bundle.
pub fn inspection(bundle: &Path, report: &Inspection) {
    println!("bundle:   {}", Shown(bundle.display()));
    println!(
        "format:   v{} ({}), created {}",
        report.format_version,
        Shown(&report.tool),
        Shown(&report.created)
    );
    println!(
        "signer:   {} (claimed; run `airlock verify --pub KEY` to check)",
        list_or(&report.signed_by, "unsigned")
    );
    println!(
        "content:  {} image(s), {} blob(s), {} stored, {} shared between images",
        report.images.len(),
        report.blobs,
        size(report.total_bytes),
        size(report.shared_bytes)
    );
    if let Some(why) = &report.stopped_short {
        println!("note:     stopped short: {why}");
    }
    println!();
    for i in &report.images {
        println!("{}", Shown(i.name.as_deref().unwrap_or("(untagged)")));
        println!("  digest:    {}", i.digest);
        if let Some(s) = &i.source_digest {
            println!("  source:    {} (digest there {s})", Shown(&i.source));
        } else {
            println!("  source:    {}", Shown(&i.source));
        }
        println!("  platforms: {}", list_or(&i.platforms, "-"));
        println!(
            "  size:      {} ({} shared)",
            size(i.size),
            size(i.shared_bytes)
        );
    }
}

/// `a, b, c` (each escaped), or `empty` for an empty list.
fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        let shown: Vec<String> = items.iter().map(|i| Shown(i).to_string()).collect();
        shown.join(", ")
    }
}
