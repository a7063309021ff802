//! The `inspect` table: a bundle's header lines, then each image's block
//! with its referrers (signatures, SBOMs, attestations) nested under it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use airlock::error::Shown;
use airlock::ops::inspect::ImageInfo;
use airlock::ops::Inspection;

use super::{delta_bases, list_or, out_line, size};

/// The `inspect` table: the bundle, then one block per image, with the
/// signatures, SBOMs and attestations that refer to it nested under it
/// (as `--json` lists them under `referrers`). Every field but the counts
/// comes from the unverified bundle.
pub fn inspection(bundle: &Path, report: &Inspection) {
    let by_label: HashMap<String, usize> = report
        .images
        .iter()
        .enumerate()
        .map(|(n, i)| (image_label(i), n))
        .collect();
    // Referrers whose image is here are shown under it, not on their own.
    let nested: HashSet<usize> = report
        .images
        .iter()
        .enumerate()
        .flat_map(|(n, i)| {
            let by_label = &by_label;
            i.referrers
                .iter()
                .filter_map(move |r| by_label.get(r).copied().filter(|&m| m != n))
        })
        .collect();
    outln!("bundle:   {}", Shown(bundle.display()));
    outln!(
        "format:   v{} ({}), created {}",
        report.format_version,
        Shown(&report.tool),
        Shown(&report.created)
    );
    outln!(
        "signer:   {} (claimed; run `airlock verify --pub KEY` to check)",
        list_or(&report.signed_by, "unsigned")
    );
    let referrers = if nested.is_empty() {
        String::new()
    } else {
        format!(" and {} referrer(s)", nested.len())
    };
    outln!(
        "content:  {} image(s){referrers}, {} blob(s), {} stored, {} shared between images",
        report.images.len() - nested.len(),
        report.blobs,
        size(report.total_bytes),
        size(report.shared_bytes)
    );
    if let Some(why) = &report.stopped_short {
        outln!("note:     stopped short: {why}");
    }
    if let Some(d) = &report.delta {
        outln!(
            "delta:    expects {} blob(s), {} from {}",
            d.expected_count,
            size(d.expected_bytes),
            delta_bases(d)
        );
    }
    let mut shown = vec![false; report.images.len()];
    let tree = Tree {
        images: &report.images,
        by_label: &by_label,
    };
    outln!();
    for n in (0..report.images.len()).filter(|n| !nested.contains(n)) {
        tree.block(n, 0, &mut shown);
    }
    // Referrers only of each other (a cycle) have no image to sit under.
    for n in 0..report.images.len() {
        if !shown[n] {
            tree.block(n, 0, &mut shown);
        }
    }
}

/// How `inspect` names an image in `referrers`.
fn image_label(i: &ImageInfo) -> String {
    i.name.clone().unwrap_or_else(|| i.digest.to_string())
}

/// Referrers nest no deeper than this (a signature of an attestation of
/// an image is two levels).
const MAX_REFERRER_DEPTH: usize = 4;

struct Tree<'a> {
    images: &'a [ImageInfo],
    by_label: &'a HashMap<String, usize>,
}

impl Tree<'_> {
    /// One image's block at `depth`, then its referrers one level deeper;
    /// each image is shown once.
    fn block(&self, n: usize, depth: usize, shown: &mut [bool]) {
        shown[n] = true;
        let i = &self.images[n];
        let pad = "    ".repeat(depth);
        let name = Shown(i.name.as_deref().unwrap_or("(untagged)"));
        if depth == 0 {
            outln!("{name}");
        } else {
            outln!("{pad}- {name}");
        }
        outln!("{pad}  digest:    {}", i.digest);
        if let Some(s) = &i.source_digest {
            outln!("{pad}  source:    {} (digest there {s})", Shown(&i.source));
        } else {
            outln!("{pad}  source:    {}", Shown(&i.source));
        }
        outln!("{pad}  platforms: {}", list_or(&i.platforms, "-"));
        outln!(
            "{pad}  size:      {} ({} shared)",
            size(i.size),
            size(i.shared_bytes)
        );
        let children: Vec<usize> = i
            .referrers
            .iter()
            .filter_map(|r| self.by_label.get(r).copied())
            .filter(|&m| !shown[m])
            .collect();
        // Deeper ones are shown on their own, after the images.
        if children.is_empty() || depth + 1 >= MAX_REFERRER_DEPTH {
            return;
        }
        outln!("{pad}  referrers:");
        for m in children {
            if !shown[m] {
                self.block(m, depth + 1, shown);
            }
        }
    }
}
