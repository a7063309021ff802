//! `airlock repair`: rewrites a bundle's damaged or missing volumes and
//! parity files from its parity, in an order that never loses a good file,
//! then proves the result by checking it from scratch. Without parity it
//! can still put misnamed volumes under their proper names.
//!
//! Only the orchestration: what is rebuilt and which files are wrong is
//! [`crate::bundle::plan_repair`]'s. Does no printing; the CLI renders the
//! [`RepairReport`].

use std::path::{Path, PathBuf};

use crate::bundle::sign::TrustedKeys;

use crate::bundle::{check_repaired, plan_repair};
use crate::error::{Error, Result};

/// What `airlock repair` did.
#[derive(Debug, serde::Serialize)]
pub struct RepairReport {
    /// Files written again, each with the reason.
    pub rewritten: Vec<String>,
    /// Files moved out of the way or removed.
    pub moved: Vec<String>,
    /// Data shards rebuilt from parity.
    pub shards_rebuilt: usize,
    /// Whether the bundle has usable parity (without it, only volume names
    /// and foreign files can be fixed).
    pub parity: bool,
}

/// Rebuilds a bundle's damaged or missing volumes (and parity files) on
/// disk from its parity, then checks the result from scratch. Nothing is
/// changed on disk when the damage is beyond the parity.
/// The rebuilt bundle is checked (every member, and the signature against
/// `key` when given) before any file is written.
pub fn repair(path: &Path, key: Option<&TrustedKeys>) -> Result<RepairReport> {
    let plan = plan_repair(path, key)?;
    let mut report = RepairReport {
        rewritten: Vec::new(),
        moved: Vec::new(),
        shards_rebuilt: plan.shards_rebuilt(),
        parity: plan.has_parity(),
    };
    // Foreign files squat on volume names: keep them, out of the way,
    // before the proper volumes take those names.
    for p in plan.foreign_files() {
        let aside = PathBuf::from(format!("{}.foreign", p.display()));
        std::fs::rename(&p, &aside).map_err(|e| Error::io("move aside", &p, e))?;
        report.moved.push(format!(
            "{} → {} (another bundle's)",
            p.display(),
            aside.display()
        ));
    }
    for fix in plan.volume_fixes() {
        plan.write_volume(&fix)?;
        report
            .rewritten
            .push(format!("{} ({})", fix.target.display(), fix.why));
    }
    for p in plan.stray_copies() {
        std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        report.moved.push(format!(
            "{} removed (a copy of another volume)",
            p.display()
        ));
    }
    // Parity last: written again whole when any of it is damaged or missing.
    for f in plan.parity_files()?.into_iter().flatten() {
        report
            .rewritten
            .push(format!("{} (parity rebuilt)", f.target().display()));
        f.commit()?;
    }
    // Release the mapped volumes before checking the files now on disk.
    drop(plan);
    // The proof: everything checks out without help from the parity.
    check_repaired(path)?;
    Ok(report)
}
