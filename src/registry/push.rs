//! The push half of the distribution API: existence checks, cross-repository
//! mounts, monolithic and chunked uploads with their status, and manifests.
//!
//! Upload requests that carry data (PATCH, the final PUT) are sent once: on
//! CNCF distribution 2.8 a PATCH that breaks off still appends what arrived
//! and ruins the session, so a blind retry would corrupt the blob. The
//! importer restarts such a blob in a new session instead.

use ureq::http::{Method, Response};
use ureq::Body;

use super::client::{expect_status, read_limited, Client, SMALL_BODY};
use crate::error::registry::RegistryError;
use crate::model::Digest;

type R<T> = std::result::Result<T, RegistryError>;

pub enum Mount {
    Mounted,
    /// The registry opened an upload session instead; it may be used.
    Session(String),
}

fn location(client: &Client, what: &str, resp: &Response<Body>) -> R<String> {
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
        let path = format!("/v2/{repo}/blobs/{d}");
        let resp = self.send(Method::HEAD, &path, &push_scope(repo), &[])?;
        let resp = expect_status(self.what(&Method::HEAD, &path), resp, &[200, 404])?;
        Ok(resp.status() == 200)
    }

    /// Whether `repo` serves this manifest under `reference` (tag or digest).
    pub fn manifest_is(&self, repo: &str, reference: &str, d: &Digest) -> R<bool> {
        let resp = self.manifest_request(Method::HEAD, repo, reference)?;
        Ok(resp.status() == 200
            && resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == d.as_str()))
    }

    /// A manifest's bytes, or `None` if there is none under `reference`.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> R<Option<Vec<u8>>> {
        let mut resp = self.manifest_request(Method::GET, repo, reference)?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let what = self.what(&Method::GET, &format!("/v2/{repo}/manifests/{reference}"));
        Ok(Some(read_limited(&mut resp, SMALL_BODY, &what)?))
    }

    /// HEAD or GET of a manifest: the response if it is 200 or 404.
    fn manifest_request(&self, method: Method, repo: &str, reference: &str) -> R<Response<Body>> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let what = self.what(&method, &path);
        let accept = [("Accept", super::MANIFEST_ACCEPT)];
        let resp = self.send(method, &path, &push_scope(repo), &accept)?;
        expect_status(what, resp, &[200, 404])
    }

    /// Mounts a blob from another repository of the same registry.
    pub fn mount(&self, repo: &str, d: &Digest, from: &str) -> R<Mount> {
        let path = format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}");
        let scope = format!("{} repository:{from}:pull", push_scope(repo));
        let what = self.what(&Method::POST, &path);
        let resp = self.send_body(Method::POST, &path, &scope, &[], Some(&[]))?;
        let resp = expect_status(what.clone(), resp, &[201, 202])?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            _ => Ok(Mount::Session(location(self, &what, &resp)?)),
        }
    }

    /// Opens an upload session; returns its Location.
    pub fn start_upload(&self, repo: &str) -> R<String> {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let what = self.what(&Method::POST, &path);
        let resp = self.send_body(Method::POST, &path, &push_scope(repo), &[], Some(&[]))?;
        let resp = expect_status(what.clone(), resp, &[202])?;
        location(self, &what, &resp)
    }

    /// Streams the next `len` bytes of `chunk` at `offset`, once; returns
    /// the new Location and the offset the registry now holds.
    pub fn patch(
        &self,
        repo: &str,
        session: &str,
        offset: u64,
        chunk: &mut dyn std::io::Read,
        len: u64,
    ) -> R<(String, u64)> {
        let range = format!("{offset}-{}", offset + len - 1);
        let what = self.what(&Method::PATCH, session);
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", range.as_str()),
        ];
        let scope = push_scope(repo);
        let resp = self.send_stream_once(Method::PATCH, session, &scope, &headers, chunk, len)?;
        let resp = expect_status(what.clone(), resp, &[202])?;
        let next = location(self, &what, &resp)?;
        let end = range_end(&resp).unwrap_or(offset + len);
        Ok((next, end))
    }

    /// Closes a session with the last bytes (possibly none) and the digest,
    /// once.
    pub fn finish_upload(&self, repo: &str, session: &str, d: &Digest, last: &[u8]) -> R<()> {
        let url = with_query(session, &format!("digest={d}"));
        let what = self.what(&Method::PUT, session);
        let headers = [("Content-Type", "application/octet-stream")];
        let resp = self.send_body_once(Method::PUT, &url, &push_scope(repo), &headers, last)?;
        expect_status(what, resp, &[201])?;
        Ok(())
    }

    /// The offset an upload session can continue from, or `None` if the
    /// registry no longer knows it.
    pub fn upload_offset(&self, repo: &str, session: &str) -> R<Option<u64>> {
        let resp = self.send(Method::GET, session, &push_scope(repo), &[])?;
        let what = self.what(&Method::GET, session);
        let resp = expect_status(what, resp, &[204, 404, 400])?;
        Ok((resp.status() == 204).then(|| range_end(&resp).unwrap_or(0)))
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, raw: &[u8]) -> R<()> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let what = self.what(&Method::PUT, &path);
        let headers = [("Content-Type", media_type)];
        let resp = self.send_body(Method::PUT, &path, &push_scope(repo), &headers, Some(raw))?;
        expect_status(what, resp, &[201])?;
        Ok(())
    }

    /// Whether the registry has the OCI referrers API.
    pub fn has_referrers_api(&self, repo: &str, d: &Digest) -> R<bool> {
        let path = format!("/v2/{repo}/referrers/{d}");
        let resp = self.send(Method::GET, &path, &push_scope(repo), &[])?;
        Ok(resp.status() == 200)
    }
}

/// `Range: 0-N` → N + 1, the offset to continue from.
fn range_end(resp: &Response<Body>) -> Option<u64> {
    let v = resp.headers().get("range")?.to_str().ok()?;
    let end: u64 = v.rsplit('-').next()?.trim().parse().ok()?;
    end.checked_add(1)
}
