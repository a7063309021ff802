//! Lists that a registry sends a page at a time (`/v2/_catalog`,
//! `/v2/NAME/tags/list`), followed by their `Link: <…>; rel="next"`
//! headers until the last page, and refused when a page comes back.

use ureq::http::Method;

use super::{read_limited, Client, SMALL_BODY};
use crate::error::registry::{Failure, RegistryError, PAGES_REPEAT};

impl Client {
    /// Follows `Link: <…>; rel="next"` pages of a JSON list, collecting the
    /// array at `field`.
    pub fn paginate(
        &self,
        first: &str,
        scope: &str,
        field: &str,
    ) -> std::result::Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            // A registry whose next link names a page it sent already would
            // keep this loop (and its list) growing for ever.
            if !seen.insert(path.clone()) {
                let what = self.what(&Method::GET, &path);
                let kind = Failure::Protocol(format!(
                    "{PAGES_REPEAT}: its next-page link names a page it sent already"
                ));
                return Err(RegistryError::target(what, &self.registry, kind));
            }
            let mut resp =
                self.success(Method::GET, &path, scope, &[("Accept", "application/json")])?;
            next = resp
                .headers()
                .get("link")
                .and_then(|l| l.to_str().ok())
                .and_then(next_link);
            let what = self.what(&Method::GET, &path);
            let body = read_limited(&mut resp, SMALL_BODY, &what)?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| RegistryError::status(what.clone(), 200, b""))?;
            out.extend(
                v.get(field)
                    .and_then(|a| a.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from)),
            );
        }
        Ok(out)
    }
}

/// `<url>; rel="next"` → url.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
