//! Everything the CLI prints: the one error renderer (each problem, then
//! what to do about it), the summaries and tables of each command, and JSON.
//!
//! Summaries and notes go to stderr; stdout carries only what a script may
//! want (reports, key ids, the inspect table, JSON). Not for deciding
//! anything: the commands and `airlock::ops` do that and hand over values.

use std::io::Write;
use std::path::Path;

use indicatif::BinaryBytes;

use airlock::bundle::VerifyReport;
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
                    let _ = writeln!(err, "     hint: {h}");
                }
            }
        }
        e => {
            let _ = writeln!(err, "airlock: error: {e}");
            if let Some(h) = e.hint() {
                let _ = writeln!(err, "  hint: {h}");
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
/// order).
pub fn notices(notes: &[String]) {
    for note in notes {
        eprintln!("note: {note}");
    }
}

fn size(bytes: u64) -> BinaryBytes {
    BinaryBytes(bytes)
}

pub fn keygen(files: &KeyFiles) {
    println!("{}", files.key_id);
    eprintln!(
        "wrote private key {} (keep it secret) and public key {}",
        files.private.display(),
        files.public.display()
    );
}

pub fn packed(s: &PackSummary, key_id: Option<&str>) {
    eprintln!(
        "packed {} image(s), {} blob(s), {} into {}{}",
        s.images,
        s.blobs,
        size(s.bytes),
        s.output.display(),
        key_id
            .map(|k| format!(", signed by {k}"))
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
            Some(k) => format!("signed by {k}"),
            None => "signature NOT checked (--allow-unsigned)".into(),
        }
    );
}

pub fn imported(report: &ImportReport) {
    for i in &report.images {
        let why = i
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        println!("{:10} {} -> {}{why}", i.status, i.source, i.target);
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

pub fn repaired(report: &RepairReport) {
    if report.rewritten.is_empty() && report.moved.is_empty() {
        eprintln!("nothing to repair: every volume and parity file checks out");
    }
    for line in &report.moved {
        eprintln!("moved {line}");
    }
    for line in &report.rewritten {
        eprintln!("rewrote {line}");
    }
    if !report.rewritten.is_empty() {
        eprintln!(
            "repaired: {} shard(s) rebuilt; the bundle checks out",
            report.shards_rebuilt
        );
    }
}

pub fn exported(n: usize, to: &str) {
    eprintln!("exported {n} image(s) to {to}");
}

/// The `inspect` table: the bundle, then one block per image.
pub fn inspection(bundle: &Path, report: &Inspection) {
    println!("bundle:   {}", bundle.display());
    println!(
        "format:   v{} ({}), created {}",
        report.format_version, report.tool, report.created
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
        println!("{}", i.name.as_deref().unwrap_or("(untagged)"));
        println!("  digest:    {}", i.digest);
        if let Some(s) = &i.source_digest {
            println!("  source:    {} (digest there {s})", i.source);
        } else {
            println!("  source:    {}", i.source);
        }
        println!("  platforms: {}", list_or(&i.platforms, "-"));
        println!(
            "  size:      {} ({} shared)",
            size(i.size),
            size(i.shared_bytes)
        );
    }
}

/// `a, b, c`, or `empty` for an empty list.
fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}
