//! A repository in a registry (`docker://REF`, or a bare reference) as a
//! [`Source`].
//!
//! Manifests are fetched when the roots are resolved and kept in memory
//! (they are small); blobs go through the [`BlobCache`] during `prefetch`,
//! on a pool of network threads, and are then read from disk. Referrers
//! travel with their images unless turned off: cosign's
//! `sha256-<hex>.sig`/`.att`/`.sbom` tags, the OCI referrers API, and the
//! `sha256-<hex>` tag that stands in for that API on registries without it.
//!
//! A streaming source ([`RegistrySource::streaming`], for a copy into a
//! registry) keeps no cache: each blob is one HTTP body, handed to the sink
//! as it arrives (the caller checks its digest on the way) and, when the
//! connection breaks, asked for again from where it broke (`Range`).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use ureq::http::Method;

use crate::error::{Error, Result};
use crate::model::image::{media, parse_manifest, Descriptor, Parsed, MAX_MANIFEST_SIZE};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::progress::Progress;
use crate::registry::cache::{BlobCache, Download, Report};
use crate::registry::{read_limited, Client, Registries, RegistryError, MANIFEST_ACCEPT};
use crate::source::{Root, Source};

/// cosign's tag suffixes for signatures, attestations and SBOMs.
const COSIGN_SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

pub struct RegistrySource {
    name: String,
    client: Arc<Client>,
    repository: String,
    scope: String,
    roots: Vec<Root>,
    cache: Arc<BlobCache>,
    manifests: Mutex<HashMap<Digest, Arc<[u8]>>>,
    /// Bytes of each blob that its fetch moved and found held (cached, a
    /// partial file), whoever fetched it: the writer may fetch a blob
    /// before the download pool gets there, with no progress of its own,
    /// and the pool's progress then counts what that fetch did.
    accounted: Mutex<HashMap<Digest, Accounted>>,
    /// Blobs are HTTP streams, not cache files.
    stream: bool,
}

#[derive(Clone, Copy, Default)]
struct Accounted {
    moved: u64,
    held: u64,
}

/// Shared by every registry source of one command.
#[derive(Clone)]
pub struct RegistryContext {
    pub registries: Arc<Registries>,
    pub cache: Arc<BlobCache>,
    pub referrers: bool,
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Error {
        Error::Registry(Box::new(e))
    }
}

/// Tags that exist only to carry referrers; they travel with their subjects.
pub fn is_referrer_tag(tag: &str) -> bool {
    let base = COSIGN_SUFFIXES
        .iter()
        .find_map(|s| tag.strip_suffix(s))
        .unwrap_or(tag);
    base.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl RegistrySource {
    fn new(name: &str, reference: &Reference, ctx: &RegistryContext) -> Result<RegistrySource> {
        Ok(RegistrySource {
            name: name.to_string(),
            client: ctx.registries.client(&reference.registry)?,
            repository: reference.repository.clone(),
            scope: format!("repository:{}:pull", reference.repository),
            roots: Vec::new(),
            cache: ctx.cache.clone(),
            manifests: Mutex::new(HashMap::new()),
            accounted: Mutex::new(HashMap::new()),
            stream: false,
        })
    }

    /// With `stream`, blobs are read straight from the registry (see the
    /// module doc); nothing is prefetched or cached.
    pub fn streaming(mut self, stream: bool) -> RegistrySource {
        self.stream = stream;
        self
    }

    /// One image by tag or digest.
    pub fn image(
        name: &str,
        reference: &Reference,
        ctx: &RegistryContext,
    ) -> Result<RegistrySource> {
        let mut s = RegistrySource::new(name, reference, ctx)?;
        let target = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        let descriptor =
            s.fetch_manifest(&target, reference.digest.as_ref(), &reference.to_string())?;
        s.roots.push(Root {
            name: Some(reference.clone()),
            descriptor,
            subject: None,
        });
        if ctx.referrers {
            s.add_referrers()?;
        }
        Ok(s)
    }

    /// Every tag of a repository (referrer tags travel with their subjects).
    pub fn all_tags(name: &str, repo: &Reference, ctx: &RegistryContext) -> Result<RegistrySource> {
        let tags = RegistrySource::tags(repo, ctx)?;
        RegistrySource::tagged(name, repo, &tags, ctx)
    }

    /// The tags of a repository, referrer tags left out (they travel with
    /// their subjects): what an image set's tag filter chooses from.
    pub fn tags(repo: &Reference, ctx: &RegistryContext) -> Result<Vec<String>> {
        let client = ctx.registries.client(&repo.registry)?;
        let scope = format!("repository:{}:pull", repo.repository);
        let tags = client.paginate(
            &format!("/v2/{}/tags/list", repo.repository),
            &scope,
            "tags",
        )?;
        Ok(tags.into_iter().filter(|t| !is_referrer_tag(t)).collect())
    }

    /// The named tags of one repository, as one source.
    pub fn tagged(
        name: &str,
        repo: &Reference,
        tags: &[String],
        ctx: &RegistryContext,
    ) -> Result<RegistrySource> {
        let mut s = RegistrySource::new(name, repo, ctx)?;
        for tag in tags {
            let reference = Reference {
                tag: Some(tag.clone()),
                digest: None,
                ..repo.clone()
            };
            let descriptor = s.fetch_manifest(tag, None, &reference.to_string())?;
            s.roots.push(Root {
                name: Some(reference),
                descriptor,
                subject: None,
            });
        }
        if ctx.referrers {
            s.add_referrers()?;
        }
        Ok(s)
    }

    /// The repositories of a registry's catalog, for whole-registry backups.
    pub fn catalog(registry: &str, ctx: &RegistryContext) -> Result<Vec<String>> {
        let client = ctx.registries.client(registry)?;
        Ok(client.paginate("/v2/_catalog", "registry:catalog:*", "repositories")?)
    }

    /// GETs a manifest, checks its digest, keeps its bytes, and describes it.
    fn fetch_manifest(
        &self,
        target: &str,
        expected: Option<&Digest>,
        label: &str,
    ) -> Result<Descriptor> {
        let path = format!("/v2/{}/manifests/{target}", self.repository);
        let mut resp = self
            .client
            .success(
                Method::GET,
                &path,
                &self.scope,
                &[("Accept", MANIFEST_ACCEPT)],
            )
            .map_err(Error::from)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let raw = read_limited(
            &mut resp,
            MAX_MANIFEST_SIZE,
            &format!("GET {}", self.client.url(&path)),
        )?;
        let digest = Digest::of(&raw);
        if let Some(want) = expected {
            if &digest != want {
                return Err(Error::DigestMismatch {
                    what: format!("{label}: manifest from {}", self.client.registry()),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        // The document's own mediaType wins over a generic Content-Type.
        let inner = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(String::from));
        let media_type = match inner {
            Some(t) => t,
            None if media::is_index(&content_type) || media::is_manifest(&content_type) => {
                content_type
            }
            None => match parse_manifest(&content_type, &raw, label)? {
                Parsed::Index { .. } => media::OCI_INDEX.to_string(),
                Parsed::Manifest { .. } => media::OCI_MANIFEST.to_string(),
            },
        };
        // Refuses schema 1 and garbage here, with the image's name.
        parse_manifest(&media_type, &raw, label)?;
        let descriptor = Descriptor::new(media_type, digest.clone(), raw.len() as u64);
        self.manifests
            .lock()
            .expect("not poisoned")
            .insert(digest, raw.into());
        Ok(descriptor)
    }

    /// Finds the referrers of every root and adds them as roots.
    fn add_referrers(&mut self) -> Result<()> {
        let subjects: Vec<(Digest, Reference)> = self
            .roots
            .iter()
            .filter_map(|r| Some((r.descriptor.digest.clone(), r.name.clone()?)))
            .collect();
        for (digest, name) in subjects {
            let fallback_tag = format!("sha256-{}", digest.hex());
            // cosign's own tags, and the referrers fallback tag: ordinary
            // tagged images, pushed back under the same tags on import.
            for tag in COSIGN_SUFFIXES
                .iter()
                .map(|s| format!("{fallback_tag}{s}"))
                .chain(std::iter::once(fallback_tag.clone()))
            {
                if let Some(descriptor) = self.optional_manifest(&tag, &name)? {
                    let tagged = Reference {
                        tag: Some(tag),
                        digest: None,
                        ..name.clone()
                    };
                    self.roots.push(Root {
                        name: Some(tagged),
                        descriptor,
                        subject: None,
                    });
                }
            }
            // The OCI referrers API, where the registry has one.
            let path = format!("/v2/{}/referrers/{digest}", self.repository);
            let mut resp = self.client.send(
                Method::GET,
                &path,
                &self.scope,
                &[("Accept", media::OCI_INDEX)],
            )?;
            if resp.status().as_u16() != 200 {
                continue;
            }
            let raw = read_limited(
                &mut resp,
                MAX_MANIFEST_SIZE,
                &format!("GET {}", self.client.url(&path)),
            )?;
            let Ok(Parsed::Index { manifests }) =
                parse_manifest(media::OCI_INDEX, &raw, "referrers")
            else {
                continue;
            };
            for referrer in manifests {
                if self
                    .roots
                    .iter()
                    .any(|r| r.descriptor.digest == referrer.digest)
                {
                    continue;
                }
                let descriptor = self.fetch_manifest(
                    referrer.digest.as_str(),
                    Some(&referrer.digest),
                    &format!("referrer of {name}"),
                )?;
                self.roots.push(Root {
                    name: None,
                    descriptor,
                    subject: Some(digest.clone()),
                });
            }
        }
        Ok(())
    }

    /// A manifest by tag, or `None` if the registry says it is not there.
    fn optional_manifest(&self, tag: &str, of: &Reference) -> Result<Option<Descriptor>> {
        match self.fetch_manifest(tag, None, &format!("{tag} (referrers of {of})")) {
            Ok(d) => Ok(Some(d)),
            Err(Error::Registry(e)) if e.status_code() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Source for RegistrySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn roots(&self) -> Result<Vec<Root>> {
        Ok(self.roots.clone())
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        if let Some(raw) = self
            .manifests
            .lock()
            .expect("not poisoned")
            .get(&blob.digest)
        {
            return Ok(Box::new(std::io::Cursor::new(raw.clone())));
        }
        if media::is_index(&blob.media_type) || media::is_manifest(&blob.media_type) {
            // A child of an index: fetched by digest, checked, then served.
            self.fetch_manifest(blob.digest.as_str(), Some(&blob.digest), &self.name)?;
            let raw = self.manifests.lock().expect("not poisoned")[&blob.digest].clone();
            return Ok(Box::new(std::io::Cursor::new(raw)));
        }
        if self.stream {
            return Ok(Box::new(BlobStream::open(
                self.client.clone(),
                format!("/v2/{}/blobs/{}", self.repository, blob.digest),
                self.scope.clone(),
                blob.size,
            )?));
        }
        // Follows the download pool's download of it, or fetches it first
        // when the pool has not started it.
        if let Some(r) = self.cache.open_or_follow(&blob.digest, blob.size)? {
            return Ok(r);
        }
        self.prefetch(blob, &Progress::hidden())?;
        match self.cache.open_or_follow(&blob.digest, blob.size)? {
            Some(r) => Ok(r),
            None => Err(Error::MissingBlob {
                source_name: self.name.clone(),
                digest: blob.digest.clone(),
                image: None,
            }),
        }
    }

    /// Manifests are checked when fetched. Other blobs come from the cache,
    /// through the descriptor `BlobCache::ensure` hashed in this run, or
    /// followed as they are downloaded, in which case the read that ends
    /// the blob waits for the download's digest check.
    fn opens_checked_blobs(&self) -> bool {
        !self.stream
    }

    fn prefetch(&self, blob: &Descriptor, progress: &Progress) -> Result<()> {
        if self.stream || media::is_index(&blob.media_type) || media::is_manifest(&blob.media_type)
        {
            return Ok(());
        }

        let path = format!("/v2/{}/blobs/{}", self.repository, blob.digest);
        let what = format!("{} blob {}", self.name, blob.digest);
        let bar = progress.child(blob.size, &blob.digest.short()["sha256:".len()..]);
        let client = &self.client;
        let scope = &self.scope;
        let account = |moved: u64, held: u64| {
            let mut all = self.accounted.lock().expect("not poisoned");
            let a = all.entry(blob.digest.clone()).or_default();
            a.moved += moved;
            a.held += held;
        };
        self.cache
            .ensure(
                &blob.digest,
                blob.size,
                &what,
                3,
                |offset| {
                    let range = format!("bytes={offset}-");
                    let headers: Vec<(&str, &str)> = if offset > 0 {
                        vec![("Range", range.as_str())]
                    } else {
                        vec![]
                    };
                    let resp = client.success(Method::GET, &path, scope, &headers)?;
                    let from_offset = offset == 0 || resp.status().as_u16() == 206;
                    Ok(Download {
                        body: Box::new(resp.into_body().into_reader()),
                        from_offset,
                    })
                },
                &Report {
                    bytes: &|n| {
                        bar.inc(n);
                        account(n, 0);
                    },
                    held: &|n| {
                        bar.held(n);
                        account(0, n);
                    },
                    note: &|line| bar.note(line),
                },
            )
            .inspect(|_| {
                // What another fetch of this blob did (this one waited).
                let a = self
                    .accounted
                    .lock()
                    .expect("not poisoned")
                    .get(&blob.digest)
                    .copied()
                    .unwrap_or_default();
                let (held, moved) = (bar.held_bytes(), bar.position() - bar.held_bytes());
                bar.held(a.held.saturating_sub(held));
                bar.inc(a.moved.saturating_sub(moved));
                bar.finish();
            })
    }
}

/// How often a broken blob download is taken up again, per blob.
const STREAM_RESUMES: u32 = 5;

/// One blob's body, taken up again from the byte where its connection
/// broke (`Range`; a registry that ignores it sends the whole blob again,
/// whose first bytes are skipped). Unverified: the caller hashes it.
struct BlobStream {
    client: Arc<Client>,
    path: String,
    scope: String,
    size: u64,
    /// Bytes handed out so far.
    at: u64,
    body: Box<dyn Read + Send>,
    resumes: u32,
}

impl BlobStream {
    fn open(client: Arc<Client>, path: String, scope: String, size: u64) -> Result<BlobStream> {
        let resp = client.success(Method::GET, &path, &scope, &[])?;
        Ok(BlobStream {
            body: Box::new(resp.into_body().into_reader()),
            client,
            path,
            scope,
            size,
            at: 0,
            resumes: 0,
        })
    }

    /// Asks for the rest of the blob after a broken read.
    fn resume(&mut self, cause: std::io::Error) -> std::io::Result<()> {
        if self.resumes >= STREAM_RESUMES {
            return Err(cause);
        }
        self.resumes += 1;
        log::info!(
            "{}: the download broke at byte {} ({cause}); asking for the rest",
            self.client.url(&self.path),
            self.at
        );
        let range = format!("bytes={}-", self.at);
        let resp = self
            .client
            .success(Method::GET, &self.path, &self.scope, &[("Range", &range)])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let ranged = resp.status().as_u16() == 206;
        let mut body: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        if !ranged {
            std::io::copy(&mut (&mut body).take(self.at), &mut std::io::sink())?;
        }
        self.body = body;
        Ok(())
    }
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.body.read(buf) {
                Ok(0) if self.at < self.size && !buf.is_empty() => {
                    self.resume(std::io::ErrorKind::UnexpectedEof.into())?
                }
                Ok(n) => {
                    self.at += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.resume(e)?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_referrer_tags() {
        let hex = "a".repeat(64);
        assert!(is_referrer_tag(&format!("sha256-{hex}")));
        assert!(is_referrer_tag(&format!("sha256-{hex}.sig")));
        assert!(is_referrer_tag(&format!("sha256-{hex}.sbom")));
        assert!(!is_referrer_tag("sha256-abc.sig"));
        assert!(!is_referrer_tag("v1.2"));
    }
}
