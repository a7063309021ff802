//! The read side of the OCI distribution API over the merged [`View`]:
//! what each path answers, with the status, headers and error bodies a
//! registry gives.
//!
//! Not for bytes on the wire (`http.rs`) nor for connections (`server.rs`).

use serde_json::json;

use super::http::{self, Request};
use super::view::View;
use crate::model::image::media;
use crate::model::Digest;

/// What to send: head, then a body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

pub enum Body {
    Bytes(Vec<u8>),
    /// Bytes `start..end` of a blob streamed from bundle `slot`.
    Blob {
        slot: usize,
        digest: Digest,
        size: u64,
        start: u64,
        end: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Blob { start, end, .. } => end - start,
        }
    }
}

impl Answer {
    fn new(status: u16, content_type: &str, body: Body) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    fn json(status: u16, value: serde_json::Value) -> Answer {
        let mut bytes = serde_json::to_vec(&value).expect("JSON values serialise");
        bytes.push(b'\n');
        Answer::new(status, "application/json", Body::Bytes(bytes))
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A distribution API error body.
pub fn error(status: u16, code: &str, message: impl Into<String>) -> Answer {
    Answer::json(
        status,
        json!({"errors": [{"code": code, "message": message.into(), "detail": null}]}),
    )
}

/// Answers one authenticated request.
pub fn answer(view: &View, req: &Request) -> Answer {
    let path = req.path.as_str();
    if !(path == "/v2" || path.starts_with("/v2/")) {
        return error(404, "NOT_FOUND", format!("{path} is not a registry path"));
    }
    if req.method != "GET" && req.method != "HEAD" {
        return error(
            405,
            "UNSUPPORTED",
            format!(
                "{} is not supported: airlock serve is read-only (import the bundle into a registry to push to it)",
                req.method
            ),
        );
    }
    if path == "/v2" || path == "/v2/" {
        return Answer::json(200, json!({}));
    }
    if path == "/v2/_catalog" {
        let names: Vec<&String> = view.repos().keys().collect();
        return page(
            req,
            "/v2/_catalog",
            &names,
            |page| json!({ "repositories": page }),
        );
    }
    let rest = &path["/v2/".len()..];
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let name = http::decode(name);
        let Some(repo) = view.repos().get(&name) else {
            return unknown_name(&name);
        };
        let tags: Vec<&String> = repo.tags.keys().collect();
        let base = format!("/v2/{name}/tags/list");
        return page(
            req,
            &base,
            &tags,
            |page| json!({"name": name, "tags": page}),
        );
    }
    // The route is the separator that comes last: a repository name may
    // have `manifests` or `blobs` components (`a/manifests/b/blobs/…`).
    let found = [
        ("/manifests/", Route::Manifest),
        ("/blobs/", Route::Blob),
        ("/referrers/", Route::Referrers),
    ]
    .into_iter()
    .filter_map(|(sep, route)| Some((rest.rfind(sep)?, sep, route)))
    .max_by_key(|&(i, _, _)| i);
    if let Some((i, sep, route)) = found {
        let name = http::decode(&rest[..i]);
        let reference = http::decode(&rest[i + sep.len()..]);
        return match route {
            Route::Manifest => manifest(view, req, &name, &reference),
            Route::Blob => blob(view, req, &name, &reference),
            Route::Referrers => referrers(view, req, &name, &reference),
        };
    }
    error(404, "NOT_FOUND", format!("{path} is not a registry path"))
}

enum Route {
    Manifest,
    Blob,
    Referrers,
}

fn unknown_name(name: &str) -> Answer {
    error(
        404,
        "NAME_UNKNOWN",
        format!("repository {name} is not in the bundles served"),
    )
}

/// `n`/`last` pagination over sorted `items`, with a `Link` to the next
/// page when there is one.
fn page(
    req: &Request,
    base: &str,
    items: &[&String],
    body: impl Fn(Vec<&String>) -> serde_json::Value,
) -> Answer {
    let n = match req.param("n").map(|n| n.parse::<usize>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return error(
                400,
                "PAGINATION_NUMBER_INVALID",
                "n must be a non-negative number",
            )
        }
    };
    let last = req.param("last");
    let from = match &last {
        Some(l) => items.partition_point(|i| i.as_str() <= l.as_str()),
        None => 0,
    };
    let rest = &items[from..];
    let take = n.unwrap_or(rest.len()).min(rest.len());
    let page: Vec<&String> = rest[..take].to_vec();
    let mut a = Answer::json(200, body(page.clone()));
    if let (Some(n), Some(last)) = (n, page.last()) {
        if take < rest.len() {
            a = a.header(
                "Link",
                format!("<{base}?last={}&n={n}>; rel=\"next\"", http::encode(last)),
            );
        }
    }
    a
}

fn manifest(view: &View, req: &Request, name: &str, reference: &str) -> Answer {
    let Some(repo) = view.repos().get(name) else {
        return unknown_name(name);
    };
    let digest = match reference.parse::<Digest>() {
        Ok(d) if repo.manifests.contains(&d) => Some(d),
        Ok(_) => None,
        Err(_) => repo.tags.get(reference).cloned(),
    };
    let Some((digest, m)) = digest.and_then(|d| Some((d.clone(), view.manifest(&d)?))) else {
        return error(
            404,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} is not in {name}"),
        );
    };
    if !accepts(req.header_list("accept").as_deref(), &m.media_type) {
        return error(
            404,
            "MANIFEST_UNKNOWN",
            format!(
                "{name}:{reference} is a {}, which the request's Accept header excludes (serve does not convert manifests)",
                m.media_type
            ),
        );
    }
    Answer::new(200, &m.media_type, Body::Bytes(m.raw.to_vec()))
        .header("Docker-Content-Digest", digest.to_string())
        .header("ETag", format!("\"{digest}\""))
}

/// Whether an `Accept` header lets `media_type` through. No header, or
/// one naming no manifest type at all (`*/*`), accepts anything.
fn accepts(accept: Option<&str>, media_type: &str) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        // Media types are case-insensitive (RFC 9110 §8.3.1).
        .any(|t| {
            t.eq_ignore_ascii_case(media_type)
                || t == "*/*"
                || t.eq_ignore_ascii_case("application/*")
                || t.eq_ignore_ascii_case("application/json")
        })
}

fn blob(view: &View, req: &Request, name: &str, reference: &str) -> Answer {
    let Some(repo) = view.repos().get(name) else {
        return unknown_name(name);
    };
    let Ok(digest) = reference.parse::<Digest>() else {
        return error(
            400,
            "DIGEST_INVALID",
            format!("{reference} is not a digest"),
        );
    };
    let unknown = || {
        error(
            404,
            "BLOB_UNKNOWN",
            format!("blob {digest} is not in {name}"),
        )
    };
    let (slot, size) = match view.blob(&digest) {
        Some(found) if repo.blobs.contains(&digest) || repo.manifests.contains(&digest) => found,
        _ => {
            // A manifest asked for as a blob, which registries allow.
            return match view
                .manifest(&digest)
                .filter(|_| repo.manifests.contains(&digest))
            {
                Some(m) => {
                    Answer::new(200, "application/octet-stream", Body::Bytes(m.raw.to_vec()))
                        .header("Docker-Content-Digest", digest.to_string())
                }
                None => unknown(),
            };
        }
    };
    let (status, start, end) = match http::range(req.header("range"), size) {
        Ok(None) => (200, 0, size),
        Ok(Some((s, e))) => (206, s, e),
        Err(()) => {
            return error(
                416,
                "BLOB_UNKNOWN",
                format!("the range asked for is outside blob {digest} ({size} bytes)"),
            )
            .header("Content-Range", format!("bytes */{size}"))
        }
    };
    let mut a = Answer::new(
        status,
        "application/octet-stream",
        Body::Blob {
            slot,
            digest: digest.clone(),
            size,
            start,
            end,
        },
    )
    .header("Docker-Content-Digest", digest.to_string())
    .header("Accept-Ranges", "bytes")
    .header("ETag", format!("\"{digest}\""));
    if status == 206 {
        a = a.header("Content-Range", format!("bytes {start}-{}/{size}", end - 1));
    }
    a
}

fn referrers(view: &View, req: &Request, name: &str, reference: &str) -> Answer {
    let Some(repo) = view.repos().get(name) else {
        return unknown_name(name);
    };
    let Ok(subject) = reference.parse::<Digest>() else {
        return error(
            400,
            "DIGEST_INVALID",
            format!("{reference} is not a digest"),
        );
    };
    let filter = req.param("artifactType");
    let all = repo.referrers.get(&subject).cloned().unwrap_or_default();
    let manifests: Vec<_> = all
        .into_iter()
        .filter(|d| {
            filter
                .as_deref()
                .is_none_or(|f| d.artifact_type.as_deref() == Some(f))
        })
        .collect();
    let mut a = Answer::json(
        200,
        json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests}),
    );
    a.headers[0].1 = media::OCI_INDEX.into();
    if filter.is_some() {
        a = a.header("OCI-Filters-Applied", "artifactType");
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let oci = media::OCI_MANIFEST;
        assert!(accepts(None, oci));
        assert!(accepts(Some("*/*"), oci));
        assert!(accepts(
            Some(&format!("{}, {oci};q=0.9", media::DOCKER_MANIFEST)),
            oci
        ));
        assert!(!accepts(Some(media::DOCKER_MANIFEST), oci));
        assert!(!accepts(Some(media::OCI_MANIFEST), media::OCI_INDEX));
        assert!(accepts(
            Some("Application/VND.oci.image.manifest.v1+JSON"),
            oci
        ));
    }
}
