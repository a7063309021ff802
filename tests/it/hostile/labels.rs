//! Hostile volume labels (format §13) for the table in `hostile.rs`: a
//! set of volumes concatenated into one file, one label forged and its
//! own hash made right, so only the reader's rules can catch it.

use airlock::bundle::volume::Label;

use super::craft::*;
use super::Case;

/// Where the set is cut into three volumes.
pub fn cuts(e: &[Entry]) -> [usize; 2] {
    [e.len() / 3, 2 * e.len() / 3]
}

/// Volumes concatenated into one file (§13) with a label forged: its 44
/// bytes past the bundle id must not carry anything unchecked.
pub fn label_cases(parts: &Parts) -> Vec<Case> {
    let e = entries(&parts.frames());
    let cuts = cuts(&e);
    let id = parts.id();
    let mut cases = Vec::new();
    let mut add = |label, forge: &dyn Fn(&mut [Label]), file, stream| {
        cases.push(Case {
            label,
            bytes: volumes(&e, &cuts, &id, forge),
            file,
            stream,
        })
    };
    let checksum = "does not match its label's checksum";
    add(
        "label checksum",
        &|l| l[1].checksum = [0x42; 32],
        checksum,
        checksum,
    );
    let number = "it says volume 999 of 3";
    add(
        "label number and length",
        &|l| {
            l[1].number = 999;
            l[1].length = 123_456;
        },
        number,
        number,
    );
    let length = "its label says";
    add("label length", &|l| l[1].length += 8, length, length);
    // A fourth label inside volume 2, the others still counting three.
    let mut cuts = cuts.to_vec();
    cuts.insert(1, cuts[0] + 1);
    cases.push(Case {
        label: "extra label",
        bytes: volumes(&e, &cuts, &id, |l| {
            let extra = l[2].length;
            l[1].length += extra;
            l[2] = l[1].clone();
            l[3].number = 3;
            l.iter_mut().for_each(|l| l.count = 3);
        }),
        file: "belongs here",
        stream: "its label says",
    });
    cases
}
