//! The push half of the distribution API: existence checks, cross-repository
//! mounts, monolithic and chunked uploads with their status, and manifests.
//!
//! Upload requests that carry data (PATCH, the final PUT) are sent once: on
//! CNCF distribution 2.8 a PATCH that breaks off still appends what arrived
//! and ruins the session, so a blind retry would corrupt the blob. The
//! importer restarts such a blob in a new session instead.

use ureq::http::Method;

use super::client::{error_from, read_limited, Client, SMALL_BODY};
use crate::error::registry::{redact, RegistryError};
use crate::model::Digest;

type R<T> = std::result::Result<T, RegistryError>;

pub enum Mount {
    Mounted,
    /// The registry opened an upload session instead; it may be used.
    Session(String),
}

fn location(client: &Client, what: &str, resp: &ureq::http::Response<ureq::Body>) -> R<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|l| client.url(l))
        .ok_or_else(|| {
            RegistryError::status(
                format!("{what}: no Location header"),
                resp.status().as_u16(),
                b"",
            )
        })
}

fn with_query(location: &str, query: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{query}")
}

/// `repository:REPO:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

impl Client {
    pub fn blob_exists(&self, repo: &str, d: &Digest) -> R<bool> {
        let resp = self.send(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{d}"),
            &push_scope(repo),
            &[],
        )?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(error_from(
                format!(
                    "HEAD {}",
                    redact(&self.url(&format!("/v2/{repo}/blobs/{d}")))
                ),
                resp,
            )),
        }
    }

    /// Whether `repo` serves this manifest under `reference` (tag or digest).
    pub fn manifest_is(&self, repo: &str, reference: &str, d: &Digest) -> R<bool> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.send(
            Method::HEAD,
            &path,
            &push_scope(repo),
            &[("Accept", super::MANIFEST_ACCEPT)],
        )?;
        match resp.status().as_u16() {
            200 => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == d.as_str())),
            404 => Ok(false),
            _ => Err(error_from(
                format!("HEAD {}", redact(&self.url(&path))),
                resp,
            )),
        }
    }

    /// Mounts a blob from another repository of the same registry.
    pub fn mount(&self, repo: &str, d: &Digest, from: &str) -> R<Mount> {
        let path = format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}");
        let scope = format!("{} repository:{from}:pull", push_scope(repo));
        let what = format!("POST {}", redact(&self.url(&path)));
        let resp = self.send_body(Method::POST, &path, &scope, &[], Some(&[]))?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Session(location(self, &what, &resp)?)),
            _ => Err(error_from(what, resp)),
        }
    }

    /// Opens an upload session; returns its Location.
    pub fn start_upload(&self, repo: &str) -> R<String> {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let what = format!("POST {}", redact(&self.url(&path)));
        let resp = self.send_body(Method::POST, &path, &push_scope(repo), &[], Some(&[]))?;
        if resp.status().as_u16() != 202 {
            return Err(error_from(what, resp));
        }
        location(self, &what, &resp)
    }

    /// Sends one chunk at `offset`; returns the new Location and the offset
    /// the registry now holds.
    /// Streams the next `len` bytes of `chunk` at `offset`; returns the new
    /// Location and the offset the registry now holds.
    pub fn patch(
        &self,
        repo: &str,
        session: &str,
        offset: u64,
        chunk: &mut dyn std::io::Read,
        len: u64,
    ) -> R<(String, u64)> {
        let range = format!("{offset}-{}", offset + len - 1);
        let what = format!("PATCH {}", redact(session));
        let resp = self.send_stream_once(
            Method::PATCH,
            session,
            &push_scope(repo),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            chunk,
            len,
        )?;
        if resp.status().as_u16() != 202 {
            return Err(error_from(what, resp));
        }
        let next = location(self, &what, &resp)?;
        let end = range_end(&resp).unwrap_or(offset + len);
        Ok((next, end))
    }

    /// Closes a session with the last bytes (possibly none) and the digest.
    pub fn finish_upload(&self, repo: &str, session: &str, d: &Digest, last: &[u8]) -> R<()> {
        let url = with_query(session, &format!("digest={d}"));
        let what = format!("PUT {}", redact(session));
        let resp = self.send_body_once(
            Method::PUT,
            &url,
            &push_scope(repo),
            &[("Content-Type", "application/octet-stream")],
            last,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(error_from(what, resp));
        }
        Ok(())
    }

    /// The offset an upload session can continue from, or `None` if the
    /// registry no longer knows it.
    pub fn upload_offset(&self, repo: &str, session: &str) -> R<Option<u64>> {
        let resp = self.send(Method::GET, session, &push_scope(repo), &[])?;
        match resp.status().as_u16() {
            204 => Ok(Some(range_end(&resp).unwrap_or(0))),
            404 | 400 => Ok(None),
            _ => Err(error_from(format!("GET {}", redact(session)), resp)),
        }
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, raw: &[u8]) -> R<()> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let what = format!("PUT {}", redact(&self.url(&path)));
        let resp = self.send_body(
            Method::PUT,
            &path,
            &push_scope(repo),
            &[("Content-Type", media_type)],
            Some(raw),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(error_from(what, resp));
        }
        Ok(())
    }

    /// A manifest's bytes, or `None` if there is none under `reference`.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> R<Option<Vec<u8>>> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let what = format!("GET {}", redact(&self.url(&path)));
        let mut resp = self.send(
            Method::GET,
            &path,
            &push_scope(repo),
            &[("Accept", super::MANIFEST_ACCEPT)],
        )?;
        match resp.status().as_u16() {
            200 => Ok(Some(read_limited(&mut resp, SMALL_BODY, &what)?)),
            404 => Ok(None),
            _ => Err(error_from(what, resp)),
        }
    }

    /// Whether the registry has the OCI referrers API.
    pub fn has_referrers_api(&self, repo: &str, d: &Digest) -> R<bool> {
        let resp = self.send(
            Method::GET,
            &format!("/v2/{repo}/referrers/{d}"),
            &push_scope(repo),
            &[],
        )?;
        Ok(resp.status().as_u16() == 200)
    }
}

/// `Range: 0-N` → N + 1, the offset to continue from.
fn range_end(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("range")?.to_str().ok()?;
    let end: u64 = v.rsplit('-').next()?.trim().parse().ok()?;
    Some(end + 1)
}
