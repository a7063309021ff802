//! `airlock cache du|ls|prune`: what pack's blob cache holds, and removing
//! the least recently used entries from it.
//!
//! Orchestration only: the layout, the record of use and the lock are the
//! cache's own (`registry::cache::manage`). Not for printing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::registry::cache::manage::{self, Entry, Exclusive};
use crate::registry::cache::BlobCache;

/// The cache pack uses without `--cache`.
pub fn default_dir() -> std::path::PathBuf {
    BlobCache::default_dir()
}

/// `cache du`: totals.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub cache: String,
    /// Bytes of every file counted below.
    pub bytes: u64,
    /// Complete blobs.
    #[serde(rename = "entry_count")]
    pub entries: usize,
    pub entry_bytes: u64,
    /// Partial downloads (a later pack continues them).
    #[serde(rename = "partial_count")]
    pub partial: usize,
    pub partial_bytes: u64,
}

/// One line of `cache ls`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub digest: String,
    pub size: u64,
    /// Last use, RFC 3339, UTC.
    pub last_used: String,
    pub partial: bool,
}

/// What `cache prune` removed and left.
#[derive(Debug, Serialize)]
pub struct Pruned {
    pub cache: String,
    #[serde(rename = "removed_count")]
    pub removed: usize,
    pub removed_bytes: u64,
    /// What the cache holds after.
    #[serde(rename = "left_count")]
    pub left: usize,
    pub left_bytes: u64,
}

pub fn du(root: &Path) -> Result<Usage> {
    let all = manage::entries(root)?;
    let (partial, complete): (Vec<&Entry>, Vec<&Entry>) = all.iter().partition(|e| e.partial);
    let entry_bytes = complete.iter().map(|e| e.size).sum();
    let partial_bytes = partial.iter().map(|e| e.size).sum();
    Ok(Usage {
        cache: root.display().to_string(),
        bytes: entry_bytes + partial_bytes,
        entries: complete.len(),
        entry_bytes,
        partial: partial.len(),
        partial_bytes,
    })
}

/// Every entry, least recently used first.
pub fn ls(root: &Path) -> Result<Vec<Listed>> {
    Ok(manage::entries(root)?
        .into_iter()
        .map(|e| Listed {
            digest: e.digest.to_string(),
            size: e.size,
            last_used: rfc3339(e.used),
            partial: e.partial,
        })
        .collect())
}

/// Removes entries not used for `older_than`, then the least recently used
/// until at most `max_size` bytes are left. Refused while a pack holds the
/// cache; a pack that starts meanwhile waits.
pub fn prune(root: &Path, older_than: Option<Duration>, max_size: Option<u64>) -> Result<Pruned> {
    if older_than.is_none() && max_size.is_none() {
        return Err(Error::Usage(
            "say what to prune: --older-than DURATION (e.g. 7d) and/or --max-size SIZE (e.g. 10G; 0 empties the cache)".into(),
        ));
    }
    let cache = root.display().to_string();
    if !root.is_dir() {
        return Ok(Pruned {
            cache,
            removed: 0,
            removed_bytes: 0,
            left: 0,
            left_bytes: 0,
        });
    }
    let _lock = Exclusive::take(root)?;
    let all = manage::entries(root)?;
    let mut left_bytes: u64 = all.iter().map(|e| e.size).sum();
    let cutoff = older_than.and_then(|d| SystemTime::now().checked_sub(d));
    let (mut removed, mut removed_bytes) = (0, 0);
    for e in &all {
        let stale = cutoff.is_some_and(|c| e.used < c);
        let over = max_size.is_some_and(|m| left_bytes > m);
        if !(stale || over) {
            // Oldest first: once one is kept for age, later ones may still
            // go for size.
            continue;
        }
        match std::fs::remove_file(&e.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("remove cache entry", &e.path, err)),
        }
        removed += 1;
        removed_bytes += e.size;
        left_bytes -= e.size;
    }
    Ok(Pruned {
        cache,
        removed,
        removed_bytes,
        left: all.len() - removed,
        left_bytes,
    })
}

/// `--older-than`: a whole number with a unit, `s`, `m`, `h`, `d` or `w`
/// (`30m`, `12h`, `7d`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let unit = t.chars().last().filter(|c| c.is_ascii_alphabetic());
    let secs = match unit {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some('w') => 7 * 86_400,
        _ => {
            return Err(format!(
                "{s:?} needs a unit: s, m, h, d or w (e.g. 30m, 12h, 7d)"
            ))
        }
    };
    let n: u64 = t[..t.len() - 1]
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30m, 12h or 7d"))?;
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("-1d").is_err());
    }
}
