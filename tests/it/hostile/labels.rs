//! Hostile volume labels (format §13) for the table in `hostile.rs`: a
//! set of volumes concatenated into one file, one label forged and its
//! own hash made right, so only the reader's rules can catch it.

use airlock::bundle::parity::{self, Layout};
use airlock::bundle::store::{BundleBytes, Part};
use airlock::bundle::volume::{self, Label};

use super::craft::*;
use super::Case;
use crate::util::{airlock, layout, packed, scratch};

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

/// Parity that matches the forged bytes (so no shard looks damaged) must
/// not stand in for the labels' checksums.
#[test]
fn a_forged_label_is_refused_though_the_parity_matches_it() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let parts = Parts::of(&bundle);
    let e = entries(&parts.frames());
    let id = parts.id();
    let file = t.path().join("set.airlock");
    let (f, p) = (file.to_str().unwrap(), public.to_str().unwrap());
    for forged in [false, true] {
        let bytes = volumes(&e, &cuts(&e), &id, |l| {
            if forged {
                l[1].checksum = [0x42; 32];
            }
        });
        std::fs::write(&file, &bytes).unwrap();
        let view = BundleBytes::new(vec![Part::open(&file, 0, 0, None).unwrap()]);
        let layout = Layout::new(bytes.len() as u64, 5);
        for parity in parity::encode(&view, &layout, &id, &[], &file, None).unwrap() {
            parity.commit().unwrap();
        }
        assert!(volume::parity_path(&file, None).exists());
        let out = t.path().join("out");
        let to = format!("oci:{}", out.display());
        for args in [
            vec!["verify", f, "--pub", p],
            vec!["export", "-q", f, "--pub", p, "--to", &to],
        ] {
            let r = airlock(&args, t.path());
            if !forged {
                r.ok();
                continue;
            }
            let err = r.stderr();
            assert_eq!(r.out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains("volume 2 (bytes"), "{args:?}: {err}");
            assert!(err.contains("does not match its label's checksum"), "{err}");
            assert!(!out.join("index.json").exists(), "exported");
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
