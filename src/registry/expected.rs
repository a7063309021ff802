//! A delta's expected blobs in the target: the blobs a delta bundle's images
//! need but do not carry, which the far side must already hold.
//!
//! Before any blob is sent, each expected blob is looked for in every
//! repository whose images need it (HEAD); one found in some repository is
//! mounted into the others; one found in none is looked for in the other
//! repositories the registry lists (a base image's layer may sit in a
//! repository the delta does not name) and mounted from there. An expected
//! blob found nowhere fails the images that need it, with the base the delta
//! said holds it: the sink sends their other blobs but commits none of their
//! manifests or tags, since a registry would refuse them, or worse, a tag
//! would name an image that cannot be pulled.
//!
//! Not for blobs the delta carries (the sink places those) nor for reading
//! the delta (`ops::import` hands over the list).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::journal::Journal;
use super::push::Mount;
use super::Client;
use super::RegistryError;
use crate::error::{Error, Result};
use crate::model::Digest;

/// One blob the delta expects, and where it said the blob comes from.
#[derive(Clone, Debug)]
pub struct ExpectedBlob {
    pub size: u64,
    /// The base that holds it, as a message names it: `bundle sha256:… (v1.airlock)`.
    pub base: String,
}

/// What looking for the expected blobs found.
#[derive(Default)]
pub(super) struct Found {
    /// Repositories that held an expected blob, and those it was mounted into.
    pub existed: usize,
    pub mounted: usize,
    /// Expected blobs that no repository holds, with the reason.
    pub missing: HashMap<Digest, String>,
}

/// Repositories beyond the delta's own that are searched for a blob, at
/// most: a registry of thousands of repositories costs at most this many
/// HEADs per missing blob before the blob is reported missing.
const SEARCH_LIMIT: usize = 500;

/// Looks for every expected blob in the repositories that need it (`routes`),
/// mounting it where it is missing from a repository that holds it; with
/// `dry_run`, only asks. `jobs` requests at once.
pub(super) fn find_expected(
    client: &Client,
    journal: &Journal,
    expected: &HashMap<Digest, ExpectedBlob>,
    routes: &HashMap<Digest, BTreeSet<String>>,
    dry_run: bool,
    jobs: usize,
) -> Result<Found> {
    let mut work: Vec<(&Digest, Vec<&str>)> = expected
        .keys()
        .map(|d| {
            let repos = routes.get(d).into_iter().flatten().map(String::as_str);
            (d, repos.collect())
        })
        .filter(|(_, repos): &(_, Vec<&str>)| !repos.is_empty())
        .collect();
    work.sort();
    let found = Mutex::new(Found::default());
    let stop: Mutex<Option<Error>> = Mutex::new(None);
    let others = Others::default();
    let queue = Mutex::new(work.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let Some((digest, repos)) = queue.lock().expect("not poisoned").next() else {
                    break;
                };
                let searched = place(client, journal, digest, &repos, &others, dry_run);
                let mut found = found.lock().expect("not poisoned");
                match searched {
                    Ok(Some((existed, mounted))) => {
                        found.existed += existed;
                        found.mounted += mounted;
                    }
                    Ok(None) => {
                        let blob = &expected[digest];
                        found
                            .missing
                            .insert(digest.clone(), missing_reason(client, blob));
                    }
                    Err(e) => {
                        stop.lock().expect("not poisoned").get_or_insert(e);
                        queue.lock().expect("not poisoned").by_ref().for_each(drop);
                        break;
                    }
                }
            });
        }
    });
    match stop.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(found.into_inner().expect("not poisoned")),
    }
}

fn missing_reason(client: &Client, blob: &ExpectedBlob) -> String {
    format!(
        "the delta does not carry it ({} bytes) and registry {} does not hold it; the delta expects it from {}: import that base first, or pack a whole bundle",
        blob.size,
        client.registry(),
        blob.base
    )
}

/// The registry's other repositories, listed once, the first time a blob is
/// found in none of the delta's own. A registry that will not list them
/// (no catalog, or no right to it) leaves the search to the delta's own.
#[derive(Default)]
struct Others(Mutex<Option<Vec<String>>>);

impl Others {
    fn list(&self, client: &Client) -> std::result::Result<Vec<String>, RegistryError> {
        let mut listed = self.0.lock().expect("not poisoned");
        if listed.is_none() {
            let repos = match client.paginate("/v2/_catalog", "registry:catalog:*", "repositories")
            {
                Ok(r) => r,
                Err(e) if e.is_whole_target() => return Err(e),
                Err(e) => {
                    log::debug!(
                        "{}: no repository list to search for expected blobs: {e}",
                        client.registry()
                    );
                    Vec::new()
                }
            };
            *listed = Some(repos);
        }
        Ok(listed.clone().unwrap_or_default())
    }
}

/// Places one expected blob in `repos`: how many of them held it and how
/// many it was mounted into, or `None` when no repository of the registry
/// holds it.
fn place(
    client: &Client,
    journal: &Journal,
    d: &Digest,
    repos: &[&str],
    others: &Others,
    dry_run: bool,
) -> Result<Option<(usize, usize)>> {
    let (mut existed, mut mounted) = (0, 0);
    let mut holder: Option<String> = None;
    let mut lacking = Vec::new();
    for &repo in repos {
        if client.blob_exists(repo, d)? {
            existed += 1;
            holder.get_or_insert_with(|| repo.to_string());
            if !dry_run {
                journal.blob_done(repo, d)?;
            }
        } else {
            lacking.push(repo);
        }
    }
    if lacking.is_empty() {
        return Ok(Some((existed, mounted)));
    }
    if holder.is_none() {
        let candidates = others.list(client)?;
        for repo in candidates
            .iter()
            .filter(|r| !repos.contains(&r.as_str()))
            .take(SEARCH_LIMIT)
        {
            if client.blob_exists(repo, d)? {
                holder = Some(repo.to_string());
                break;
            }
        }
    }
    let Some(from) = holder else {
        return Ok(None);
    };
    for repo in lacking {
        if dry_run {
            mounted += 1;
            continue;
        }
        match client.mount(repo, d, &from)? {
            Mount::Mounted => {
                journal.blob_done(repo, d)?;
                mounted += 1;
            }
            // The registry would not mount it: without the blob's bytes
            // there is no upload to make in the session it opened.
            Mount::Session(_) => return Ok(None),
        }
    }
    Ok(Some((existed, mounted)))
}
