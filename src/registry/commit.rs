//! The last steps of a push, once every blob is in: each image's manifests
//! by digest (children before the indexes that list them), then its tag,
//! then the `sha256-<hex>` fallback index of a referrer's subject on a
//! registry without the referrers API.
//!
//! A registry refuses a manifest whose blobs it does not hold, and a tag
//! names a manifest only once it is complete; so an image whose blob failed
//! is reported failed here and nothing of it is committed.
//!
//! Not here: blobs ([`super::sink`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::journal::Journal;
use super::{Client, PushOptions};
use crate::error::{Error, Result};
use crate::model::image::{media, Descriptor};
use crate::model::Digest;
use crate::plan::PlannedImage;

/// What became of one image: where it went, and whether it is there.
#[derive(Debug, Serialize)]
pub struct ImageOutcome {
    pub source: String,
    pub target: String,
    pub digest: Digest,
    /// `pushed`, `exists` (its manifests and tag were there: nothing was
    /// committed), `failed`, or with `--dry-run` `would push` or `exists`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `--dry-run`: the digest the tag names on the target now, when
    /// the import would move it to another one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_moves_from: Option<Digest>,
    /// The digest the tag named before this import moved it here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_moved_from: Option<Digest>,
}

/// What committing an image found.
#[derive(Default)]
struct Committed {
    /// Something of it was put (a manifest, its tag, a fallback index),
    /// or would be in a dry run.
    sent: bool,
    /// For a dry run: the other digest its tag names now; otherwise the
    /// digest it named before this run moved it.
    moves_from: Option<Digest>,
}

/// One image to push: where it goes and what it needs.
pub struct Job {
    pub label: String,
    pub image: PlannedImage,
    pub repo: String,
    pub tag: Option<String>,
    /// Every blob the image needs, in push order.
    pub blobs: Vec<Descriptor>,
}

/// Manifests and indexes are committed here; everything else is a blob.
pub fn is_manifest(d: &Descriptor) -> bool {
    media::is_manifest(&d.media_type) || media::is_index(&d.media_type)
}

/// The raw bytes of a manifest or index the plan read.
fn raw<'r>(inline: &'r HashMap<Digest, Arc<[u8]>>, job: &Job, d: &Digest) -> Result<&'r [u8]> {
    inline.get(d).map(|r| &r[..]).ok_or_else(|| {
        Error::Failed(format!(
            "{}: manifest {d} was not read from the source",
            job.label
        ))
    })
}

/// Manifests, indexes and tags for every image, in order. An image whose
/// blobs failed is skipped, with the reason; the others go on.
pub fn commit_images(
    client: &Client,
    journal: &Journal,
    jobs: &[Job],
    inline: &HashMap<Digest, Arc<[u8]>>,
    failed_blobs: &HashMap<Digest, String>,
    opts: &PushOptions,
    host: &str,
) -> Vec<ImageOutcome> {
    let dry_run = opts.dry_run;
    let mut outcomes = Vec::new();
    let mut pushed_manifests: BTreeMap<(String, Digest), bool> = BTreeMap::new();
    let fallback_tags: BTreeSet<(String, String)> = jobs
        .iter()
        .filter_map(|j| Some((j.repo.clone(), j.tag.clone()?)))
        .collect();
    for job in jobs {
        let digest = &job.image.descriptor.digest;
        let target = match &job.tag {
            Some(t) => format!("{host}/{}:{t}", job.repo),
            None => format!("{host}/{}@{digest}", job.repo),
        };
        let mut blob_errors = job
            .blobs
            .iter()
            .filter_map(|b| failed_blobs.get(&b.digest).map(|e| (b, e)));
        let blob_error = blob_errors.next();
        let others: Vec<String> = blob_errors.map(|(b, _)| b.digest.to_string()).collect();
        let result = match blob_error {
            Some((b, e)) => Err(Error::Failed(format!(
                "blob {} was not pushed: {e}{}",
                b.digest,
                match others.len() {
                    0 => String::new(),
                    n => format!(" (nor were {n} more of its blobs: {})", others.join(", ")),
                }
            ))),
            None if dry_run => would_commit(client, job, &target, opts.no_overwrite),
            None => {
                let mut commit = Commit {
                    client,
                    journal,
                    inline,
                    done: &mut pushed_manifests,
                    no_overwrite: opts.no_overwrite,
                    target: &target,
                };
                commit.image(job, &fallback_tags)
            }
        };
        let status = match (&result, dry_run) {
            (Err(_), _) => "failed",
            (Ok(c), _) if !c.sent => "exists",
            (Ok(_), true) => "would push",
            (Ok(_), false) => "pushed",
        };
        let (error, moves_from) = match result {
            Ok(c) => (None, c.moves_from),
            Err(e) => (Some(e.to_string()), None),
        };
        let (tag_moves_from, tag_moved_from) = match dry_run {
            true => (moves_from, None),
            false => (None, moves_from),
        };
        outcomes.push(ImageOutcome {
            source: job.label.clone(),
            target,
            digest: digest.clone(),
            status: status.into(),
            error,
            tag_moves_from,
            tag_moved_from,
        });
    }
    outcomes
}

/// What a dry run would commit for an image: nothing when the target
/// serves it under its tag (or its digest, untagged) already, and for a
/// tag that names another digest now, that digest.
fn would_commit(client: &Client, job: &Job, target: &str, no_overwrite: bool) -> Result<Committed> {
    let d = &job.image.descriptor.digest;
    let reference = job.tag.clone().unwrap_or_else(|| d.to_string());
    // The bytes, not a HEAD: the digest a registry reports is optional.
    let now = client
        .get_manifest(&job.repo, &reference)?
        .map(|raw| Digest::of(&raw));
    Ok(match now {
        Some(now) if &now == d => Committed::default(),
        Some(now) if job.tag.is_some() && no_overwrite => return Err(tag_taken(target, &now, d)),
        Some(now) if job.tag.is_some() => Committed {
            sent: true,
            moves_from: Some(now),
        },
        _ => Committed {
            sent: true,
            moves_from: None,
        },
    })
}

/// `--no-overwrite` found the tag naming another image.
fn tag_taken(target: &str, now: &Digest, ours: &Digest) -> Error {
    Error::Refused {
        what: format!("tag {target}"),
        reason: format!(
            "it names {now} on the registry, and this image is {ours}; --no-overwrite leaves it there"
        ),
        hint: "import without --no-overwrite to move the tag, or map the image to another tag (--map, --prefix)".into(),
    }
}

struct Commit<'a> {
    client: &'a Client,
    journal: &'a Journal,
    inline: &'a HashMap<Digest, Arc<[u8]>>,
    /// `(repo, digest)` of manifests this run committed already, and
    /// whether it put them (or found them there).
    done: &'a mut BTreeMap<(String, Digest), bool>,
    /// Refuse to move a tag to another digest.
    no_overwrite: bool,
    /// The image's name on the target, for messages.
    target: &'a str,
}

impl Commit<'_> {
    /// Pushes an image's manifests and indexes by digest, then its tag, and
    /// keeps the referrers fallback tag of its subject up to date. A
    /// journaled manifest is skipped only when a HEAD confirms it. Says
    /// whether anything was put.
    fn image(
        &mut self,
        job: &Job,
        fallback_tags: &BTreeSet<(String, String)>,
    ) -> Result<Committed> {
        let (client, journal) = (self.client, self.journal);
        let d = &job.image.descriptor;
        // The tag first: with --no-overwrite an image whose tag names
        // another digest is refused before any of its manifests goes in.
        let mut tag_to_write = None;
        if let Some(tag) = &job.tag {
            let key = format!("{}:{tag}", job.repo);
            if !(journal.has_manifest(&key, &d.digest)
                && client.manifest_is(&job.repo, tag, &d.digest)?)
            {
                // The bytes, not a HEAD: the digest a registry reports is
                // optional. One GET per tag that is about to be written.
                let now = client
                    .get_manifest(&job.repo, tag)?
                    .map(|raw| Digest::of(&raw));
                match now {
                    Some(now) if now != d.digest && self.no_overwrite => {
                        return Err(tag_taken(self.target, &now, &d.digest))
                    }
                    Some(now) if now != d.digest => tag_to_write = Some((tag, key, Some(now))),
                    // The tag names this image already (another bundle put
                    // it there): a registry holds a manifest only with all
                    // it refers to, so the whole image is there.
                    Some(_) => {
                        journal.manifest_done(&key, &d.digest)?;
                        return Ok(Committed::default());
                    }
                    None => tag_to_write = Some((tag, key, None)),
                }
            }
        }
        let mut sent = false;
        for d in job.blobs.iter().filter(|b| is_manifest(b)) {
            let done = (job.repo.clone(), d.digest.clone());
            if let Some(&put) = self.done.get(&done) {
                sent |= put;
                continue;
            }
            let key = format!("{}@{}", job.repo, d.digest);
            let there = journal.has_manifest(&key, &d.digest)
                && client.manifest_is(&job.repo, d.digest.as_str(), &d.digest)?;
            if !there {
                let bytes = raw(self.inline, job, &d.digest)?;
                client.put_manifest(&job.repo, d.digest.as_str(), &d.media_type, bytes)?;
                journal.manifest_done(&key, &d.digest)?;
                sent = true;
            }
            self.done.insert(done, !there);
        }
        let mut moved_from = None;
        if let Some((tag, key, now)) = tag_to_write {
            let bytes = raw(self.inline, job, &d.digest)?;
            client.put_manifest(&job.repo, tag, &d.media_type, bytes)?;
            journal.manifest_done(&key, &d.digest)?;
            moved_from = now;
            sent = true;
        }
        if let Some(subject) = &job.image.subject {
            let tag = format!("sha256-{}", subject.hex());
            // A fallback index carried in the bundle is pushed as it is.
            if !fallback_tags.contains(&(job.repo.clone(), tag.clone()))
                && !client.has_referrers_api(&job.repo, subject)?
            {
                sent |= self.add_to_fallback_index(&job.repo, &tag, job)?;
            }
        }
        Ok(Committed {
            sent,
            moves_from: moved_from,
        })
    }

    /// Appends a referrer to its subject's `sha256-<hex>` index (read, add,
    /// write back), as clients of registries without the referrers API do.
    /// Says whether it was added (it was not there yet).
    fn add_to_fallback_index(&self, repo: &str, tag: &str, job: &Job) -> Result<bool> {
        let bad = |reason: String| Error::BadJson {
            what: format!("{repo}:{tag}"),
            reason,
        };
        let mut index = match self.client.get_manifest(repo, tag)? {
            Some(raw) => {
                serde_json::from_slice::<serde_json::Value>(&raw).map_err(|e| bad(e.to_string()))?
            }
            None => {
                serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []})
            }
        };
        let d = &job.image.descriptor;
        let manifests = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| bad("no manifests array".into()))?;
        if manifests.iter().any(|m| m["digest"] == d.digest.as_str()) {
            return Ok(false);
        }
        let doc: serde_json::Value =
            serde_json::from_slice(raw(self.inline, job, &d.digest)?).unwrap_or_default();
        let mut entry =
            serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
        let artifact_type = doc
            .get("artifactType")
            .or_else(|| doc.pointer("/config/mediaType"))
            .cloned();
        if let Some(a) = artifact_type {
            entry["artifactType"] = a;
        }
        if let Some(a) = doc.get("annotations") {
            entry["annotations"] = a.clone();
        }
        manifests.push(entry);
        let raw = serde_json::to_vec(&index).expect("JSON values serialise");
        self.client
            .put_manifest(repo, tag, media::OCI_INDEX, &raw)?;
        Ok(true)
    }
}
