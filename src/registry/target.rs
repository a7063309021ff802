//! Where pushed images go: `--to REGISTRY[/PREFIX]` (plus `--prefix`),
//! rewritten by `--map SRC=DST` and `--keep-registry`.
//!
//! A value with the naming rules and nothing else: it does not talk to the
//! registry or check that a repository exists.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::model::{Digest, Reference};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The registry, `HOST[:PORT]`.
    pub host: String,
    /// The path every repository goes under; empty for none.
    pub prefix: String,
    /// `SRC=DST` repository rewrites, first match wins.
    maps: Vec<(String, String)>,
    /// Keep the source registry's host as the first path component.
    keep_registry: bool,
    /// `REGISTRY[/PREFIX]` as given, which names the target in the journal.
    spec: String,
}

impl Target {
    /// `to` is `REGISTRY[/PREFIX]`; `prefix` (from `--prefix`) is appended to
    /// it; `maps` are `SRC=DST` strings as the user wrote them.
    pub fn parse(
        to: &str,
        prefix: Option<&str>,
        maps: &[String],
        keep_registry: bool,
    ) -> Result<Target> {
        let spec = match prefix {
            Some(p) => format!("{}/{}", to.trim_end_matches('/'), p.trim_matches('/')),
            None => to.to_string(),
        };
        let (host, prefix) = spec.split_once('/').unwrap_or((&spec, ""));
        let prefix = prefix.trim_matches('/').to_string();
        Reference::parse(&format!(
            "{host}/{}",
            if prefix.is_empty() { "x" } else { &prefix }
        ))
        .map_err(|_| {
            Error::Usage(format!(
                "--to {spec:?} is not REGISTRY[/PREFIX] (e.g. registry.local:5000/mirror)"
            ))
        })?;
        let maps = maps.iter().map(|m| parse_map(m)).collect::<Result<_>>()?;
        Ok(Target {
            host: host.to_string(),
            prefix,
            maps,
            keep_registry,
            spec,
        })
    }

    /// `REGISTRY[/PREFIX]` as the user gave it.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Where an image's repository goes: rewritten by the first `--map` whose
    /// source is the name or a path prefix of it (whole components only),
    /// with the registry host kept only if asked, under the target's prefix.
    pub fn repository(&self, name: &Reference) -> String {
        let full = name.name();
        let mapped = self.maps.iter().find_map(|(src, dst)| {
            [full.as_str(), name.repository.as_str()]
                .iter()
                .find_map(|candidate| {
                    let rest = candidate.strip_prefix(src.as_str())?;
                    (rest.is_empty() || rest.starts_with('/'))
                        .then(|| format!("{}{rest}", dst.trim_end_matches('/')))
                })
        });
        let path = mapped.unwrap_or_else(|| {
            if self.keep_registry {
                format!("{}/{}", name.registry.replace(':', "-"), name.repository)
            } else {
                name.repository.clone()
            }
        });
        self.under_prefix(&path)
    }

    /// Refuses two images that this target would tag with one `REPO:TAG`
    /// and different content (`quay.io/a/b:1` and `docker.io/a/b:1` without
    /// `--keep-registry`, or two sources `--map`ped onto one): the later tag
    /// would replace the earlier in silence. The same content under two
    /// names is one tag; the same name twice (a delta's image over its
    /// base's, in `serve`) is the caller's to order.
    pub fn refuse_shared_tags<'a>(
        &self,
        images: impl IntoIterator<Item = (&'a Reference, &'a Digest)>,
    ) -> Result<()> {
        let mut first: HashMap<(String, &str), (&Reference, &Digest)> = HashMap::new();
        for (name, digest) in images {
            let Some(tag) = name.tag.as_deref() else {
                continue;
            };
            let at = (self.repository(name), tag);
            match first.get(&at) {
                Some(&(other, d)) if d != digest && other != name => {
                    return Err(Error::Usage(format!(
                        "images {other} and {name} would both be tagged {}/{}:{tag}, and the second would replace the first; give --keep-registry, or --map one of them to another repository",
                        self.host, at.0
                    )))
                }
                Some(_) => {}
                None => {
                    first.insert(at, (name, digest));
                }
            }
        }
        Ok(())
    }

    /// The repository for images that have no name (and no named subject).
    pub fn untagged(&self) -> String {
        self.under_prefix("untagged")
    }

    fn under_prefix(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}

/// `SRC=DST`, both sides non-empty.
fn parse_map(m: &str) -> Result<(String, String)> {
    m.split_once('=')
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| Error::Usage(format!("--map {m:?} is not SRC=DST")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn to(spec: &str, maps: &[&str], keep_registry: bool) -> Target {
        let maps: Vec<String> = maps.iter().map(|m| m.to_string()).collect();
        Target::parse(spec, None, &maps, keep_registry).unwrap()
    }

    #[test]
    fn maps_repositories() {
        assert_eq!(
            to("reg", &[], false).repository(&r("nginx:1")),
            "library/nginx"
        );
        assert_eq!(
            to("reg/mirror", &[], false).repository(&r("nginx:1")),
            "mirror/library/nginx"
        );
        assert_eq!(
            to("reg/m", &[], true).repository(&r("quay.io/a/b:1")),
            "m/quay.io/a/b"
        );
        assert_eq!(
            to("reg", &[], true).repository(&r("localhost:5000/a:1")),
            "localhost-5000/a"
        );
        let maps = ["docker.io/library=hub", "team = apps/team"];
        assert_eq!(
            to("reg/m", &maps, false).repository(&r("nginx:1")),
            "m/hub/nginx"
        );
        assert_eq!(
            to("reg", &maps, false).repository(&r("reg.io/team/x:1")),
            "apps/team/x"
        );
        // Only whole path components match.
        assert_eq!(
            to("reg", &maps, false).repository(&r("reg.io/teamwork/x:1")),
            "teamwork/x"
        );
        assert_eq!(to("reg/m", &[], false).untagged(), "m/untagged");
    }

    #[test]
    fn two_images_tagged_alike_are_refused_unless_they_are_one() {
        let (a, b) = (r("quay.io/p/p:2"), r("docker.io/p/p:2"));
        let (one, two) = (Digest::of(b"one"), Digest::of(b"two"));
        let err = to("reg", &[], false)
            .refuse_shared_tags([(&a, &one), (&b, &two)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "images quay.io/p/p:2 and docker.io/p/p:2 would both be tagged reg/p/p:2, and the second would replace the first; give --keep-registry, or --map one of them to another repository"
        );
        // Kept apart by the registry, or by a map; one content; by digest.
        to("reg", &[], true)
            .refuse_shared_tags([(&a, &one), (&b, &two)])
            .unwrap();
        to("reg", &["quay.io/p=q"], false)
            .refuse_shared_tags([(&a, &one), (&b, &two)])
            .unwrap();
        to("reg", &[], false)
            .refuse_shared_tags([(&a, &one), (&b, &one)])
            .unwrap();
        let c = r(&format!("quay.io/p/p@sha256:{}", "a".repeat(64)));
        let d = r("p/p:3");
        to("reg", &[], false)
            .refuse_shared_tags([(&c, &one), (&d, &two), (&a, &two)])
            .unwrap();
    }

    #[test]
    fn parses_targets() {
        let t = to("reg:5000/mirror/", &[], false);
        assert_eq!((t.host.as_str(), t.prefix.as_str()), ("reg:5000", "mirror"));
        let t = to("reg.local", &[], false);
        assert_eq!((t.host.as_str(), t.prefix.as_str()), ("reg.local", ""));
        let t = Target::parse("reg/a/", Some("/b/"), &[], false).unwrap();
        assert_eq!((t.prefix.as_str(), t.spec()), ("a/b", "reg/a/b"));
        assert!(Target::parse("reg/UPPER", None, &[], false).is_err());
        for bad in ["x", "=y", "x="] {
            assert!(Target::parse("reg", None, &[bad.to_string()], false).is_err());
        }
    }
}
