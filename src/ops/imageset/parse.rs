//! The YAML of an image set, walked node by node so that every refusal
//! names its line and field (docs/image-sets.md is the schema).
//!
//! Not for resolving what the set names: that is [`super::open`]'s.

use std::path::{Path, PathBuf};

use regex::Regex;
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::{Catalog, Entry, Filter, ImageSet, API_VERSION, KIND};
use crate::error::{Error, Result};
use crate::model::image::Platform;
use crate::model::reference::Reference;
use crate::ops::transport::SourceSpec;

/// Parses an image set; `file` names it in errors, relative local paths
/// are taken from `base`.
pub fn parse(text: &str, file: &Path, base: &Path) -> Result<ImageSet> {
    let p = Parser { file, base };
    if let Some(at) = text.lines().position(|l| nesting_columns(l) > MAX_NESTING) {
        return Err(p.err(
            at + 1,
            "(syntax)",
            format!(
                "nests deeper than {MAX_NESTING} columns of indentation; an image set needs a few"
            ),
        ));
    }
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        p.err(
            e.marker().line(),
            "(syntax)",
            format!("not valid YAML: {}", e.info()),
        )
    })?;
    let root = match docs.as_slice() {
        [one] => one,
        [] => return Err(p.err(1, "(document)", "the file is empty")),
        [_, second, ..] => {
            return Err(p.err(
                line(second),
                "(document)",
                "holds more than one YAML document; an image set is one",
            ))
        }
    };
    let fields = p.mapping(
        root,
        "",
        &["apiVersion", "kind", "images", "catalogs", "referrers"],
    )?;
    let mut set = ImageSet {
        file: file.to_path_buf(),
        images: Vec::new(),
        catalogs: Vec::new(),
        referrers: None,
    };
    let (mut version, mut kind) = (None, None);
    for (key, value) in fields {
        match key {
            "apiVersion" => version = Some((p.string(value, key)?, line(value))),
            "kind" => kind = Some((p.string(value, key)?, line(value))),
            "images" => {
                for (i, item) in p.sequence(value, key)?.iter().enumerate() {
                    set.images.push(p.entry(item, &format!("images[{i}]"))?);
                }
            }
            "catalogs" => {
                for (i, item) in p.sequence(value, key)?.iter().enumerate() {
                    set.catalogs
                        .push(p.catalog(item, &format!("catalogs[{i}]"))?);
                }
            }
            _ => set.referrers = Some(p.boolean(value, key)?),
        }
    }
    match version {
        None => {
            return Err(p.err(
                line(root),
                "apiVersion",
                format!("missing; write apiVersion: {API_VERSION}"),
            ))
        }
        Some((v, l)) if v != API_VERSION => {
            return Err(p.err(
                l,
                "apiVersion",
                format!("{v:?} is not one this airlock reads ({API_VERSION})"),
            ))
        }
        Some(_) => {}
    }
    match kind {
        None => return Err(p.err(line(root), "kind", format!("missing; write kind: {KIND}"))),
        Some((k, l)) if k != KIND => return Err(p.err(l, "kind", format!("{k:?} is not {KIND}"))),
        Some(_) => {}
    }
    set.images = p.each_image_once(std::mem::take(&mut set.images))?;
    if set.images.is_empty() && set.catalogs.is_empty() {
        return Err(p.err(
            line(root),
            "images",
            "the set names no images and no catalogs",
        ));
    }
    Ok(set)
}

/// What an entry without a tags filter names, the same however written:
/// a registry reference normalised (`docker.io/library`, `latest`), a
/// local path without `.` components. `None`: nothing to compare.
fn same_image(entry: &Entry) -> Option<String> {
    if entry.tags.is_some() {
        return None;
    }
    // `./l`, `a/./l` and `l` are one directory: components see the inner
    // `.` but keep a leading one.
    let local = |kind: &str, path: &Path, reference: &Option<String>| {
        let path: PathBuf = path
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect();
        format!("{kind}:{}:{reference:?}", path.display())
    };
    Some(match &entry.spec {
        SourceSpec::Registry(r) => format!("docker://{}", Reference::parse(r).ok()?),
        SourceSpec::OciDir { path, reference } => local("oci", path, reference),
        SourceSpec::OciArchive { path, reference } => local("oci-archive", path, reference),
        SourceSpec::DockerArchive { path, reference } => local("docker-archive", path, reference),
        SourceSpec::Bundle(_) => return None,
    })
}

/// The YAML loader recurses once per level of nesting and limits only flow
/// collections (`[[[…`); block nesting (`- - - …`, or ever deeper
/// indentation) some thousands deep overflowed the stack. Block depth is
/// bounded by a line's indentation, so that is what is bounded here.
const MAX_NESTING: usize = 512;

/// The columns of a line's indentation and block indicators (`- `, `? `,
/// `: `) before its content.
fn nesting_columns(line: &str) -> usize {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' => i += 1,
            b'-' | b'?' | b':' if b.get(i + 1).is_none_or(|c| *c == b' ') => i += 1,
            _ => break,
        }
    }
    i
}

fn line(n: &MarkedYaml) -> usize {
    n.span.start.line()
}

struct Parser<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Parser<'_> {
    fn err(&self, line: usize, field: &str, reason: impl Into<String>) -> Error {
        Error::ImageSet {
            file: self.file.to_path_buf(),
            line,
            field: field.to_string(),
            reason: reason.into(),
            hint: None,
        }
    }

    fn wrong(&self, n: &MarkedYaml, field: &str, want: &str) -> Error {
        self.err(
            line(n),
            field,
            format!("expected {want}, found {}", type_name(n)),
        )
    }

    /// A mapping's fields in document order, every key one of `allowed`.
    fn mapping<'n>(
        &self,
        n: &'n MarkedYaml,
        path: &str,
        allowed: &[&'static str],
    ) -> Result<Vec<(&'static str, &'n MarkedYaml<'n>)>> {
        let here = if path.is_empty() { "(document)" } else { path };
        let YamlData::Mapping(map) = &n.data else {
            return Err(self.wrong(n, here, "a mapping"));
        };
        let mut fields = Vec::new();
        for (k, v) in map {
            let YamlData::Value(Scalar::String(key)) = &k.data else {
                return Err(self.wrong(k, here, "field names that are strings"));
            };
            let Some(known) = allowed.iter().find(|a| **a == key.as_ref()) else {
                let field = join(path, key);
                return Err(self.err(
                    line(k),
                    &field,
                    format!("unknown field; the fields here are {}", allowed.join(", ")),
                ));
            };
            fields.push((*known, v));
        }
        Ok(fields)
    }

    fn string(&self, n: &MarkedYaml, field: &str) -> Result<String> {
        match &n.data {
            YamlData::Value(Scalar::String(s)) if !s.is_empty() => Ok(s.to_string()),
            YamlData::Value(Scalar::String(_)) => Err(self.err(line(n), field, "is empty")),
            _ => Err(self.wrong(n, field, "a string (quote it when it looks like a number)")),
        }
    }

    fn boolean(&self, n: &MarkedYaml, field: &str) -> Result<bool> {
        match &n.data {
            YamlData::Value(Scalar::Boolean(b)) => Ok(*b),
            _ => Err(self.wrong(n, field, "true or false")),
        }
    }

    fn sequence<'n>(&self, n: &'n MarkedYaml, field: &str) -> Result<&'n [MarkedYaml<'n>]> {
        match &n.data {
            YamlData::Sequence(items) if !items.is_empty() => Ok(items),
            YamlData::Sequence(_) => Err(self.err(
                line(n),
                field,
                "is an empty list; leave the field out instead",
            )),
            _ => Err(self.wrong(n, field, "a list")),
        }
    }

    fn entry(&self, n: &MarkedYaml, path: &str) -> Result<Entry> {
        let mut text = None;
        let (mut platforms, mut tags) = (None, None);
        for (key, value) in self.mapping(n, path, &["ref", "platforms", "tags"])? {
            let field = join(path, key);
            match key {
                "ref" => text = Some((self.string(value, &field)?, line(value))),
                "platforms" => platforms = Some(self.platforms(value, &field)?),
                _ => tags = Some(self.filter(value, &field)?),
            }
        }
        let Some((text, ref_line)) = text else {
            return Err(self.err(
                line(n),
                &join(path, "ref"),
                "missing; every image names its ref",
            ));
        };
        let field = join(path, "ref");
        let spec = match SourceSpec::parse(&text) {
            Ok(s) => self.relative(s),
            Err(Error::InvalidSource { reason, .. }) => {
                return Err(self.err(ref_line, &field, format!("{text:?}: {reason}")))
            }
            Err(e) => return Err(e),
        };
        match (&spec, &tags) {
            (SourceSpec::Bundle(_), _) => {
                return Err(self.err(
                    ref_line,
                    &field,
                    "a bundle is not a source of an image set; copy it with `airlock copy bundle:FILE`",
                ))
            }
            (SourceSpec::Registry(r), Some(f)) if names_tag_or_digest(r) => {
                return Err(self.err(
                    f.line,
                    &join(path, "tags"),
                    format!("{text:?} names a tag or digest already; a tags filter needs the repository alone"),
                ))
            }
            (SourceSpec::Registry(_), _) | (_, None) => {}
            (_, Some(f)) => {
                return Err(self.err(
                    f.line,
                    &join(path, "tags"),
                    format!("{text:?} is not a registry repository; a tags filter lists a registry's tags"),
                ))
            }
        }
        Ok(Entry {
            line: line(n),
            text,
            spec,
            platforms,
            tags,
        })
    }

    /// Two entries that name one image: the same platforms (a repeated
    /// entry, a YAML alias) are carried once, the later entry dropped;
    /// different ones are refused with both lines, before any registry is
    /// asked (the plan would keep one entry's platforms, or refuse without
    /// a line). Entries with a tags filter are settled in `open`, once
    /// their tags are known.
    fn each_image_once(&self, images: Vec<Entry>) -> Result<Vec<Entry>> {
        let mut first = std::collections::HashMap::new();
        let mut kept: Vec<Entry> = Vec::with_capacity(images.len());
        for (i, entry) in images.into_iter().enumerate() {
            let Some(image) = same_image(&entry) else {
                kept.push(entry);
                continue;
            };
            let Some(&(j, at)) = first.get(&image) else {
                first.insert(image, (i, kept.len()));
                kept.push(entry);
                continue;
            };
            let earlier: &Entry = &kept[at];
            if earlier.platforms == entry.platforms {
                continue;
            }
            return Err(Error::ImageSet {
                file: self.file.to_path_buf(),
                line: entry.line,
                field: format!("images[{i}]"),
                reason: format!(
                    "{:?} names the image images[{j}] (line {}) names, with other platforms",
                    entry.text, earlier.line
                ),
                hint: Some(
                    "name each image once; list every platform it needs in that entry".into(),
                ),
            });
        }
        Ok(kept)
    }

    fn catalog(&self, n: &MarkedYaml, path: &str) -> Result<Catalog> {
        let allowed = ["registry", "repositories", "tags", "platforms"];
        let mut registry = None;
        let (mut repositories, mut tags, mut platforms) = (None, None, None);
        for (key, value) in self.mapping(n, path, &allowed)? {
            let field = join(path, key);
            match key {
                "registry" => registry = Some(self.host(value, &field)?),
                "repositories" => repositories = Some(self.filter(value, &field)?),
                "tags" => tags = Some(self.filter(value, &field)?),
                _ => platforms = Some(self.platforms(value, &field)?),
            }
        }
        let Some(registry) = registry else {
            return Err(self.err(
                line(n),
                &join(path, "registry"),
                "missing; name the registry host",
            ));
        };
        Ok(Catalog {
            line: line(n),
            registry,
            repositories: repositories.unwrap_or_else(|| Filter::everything(line(n))),
            tags,
            platforms,
        })
    }

    fn host(&self, n: &MarkedYaml, field: &str) -> Result<String> {
        let host = self.string(n, field)?;
        let bad = |reason: &str| self.err(line(n), field, format!("{host:?} {reason}"));
        if host.contains("://") || host.contains('/') {
            return Err(bad(
                "is not a registry host (write host[:port] alone, e.g. registry.example.com:5000)",
            ));
        }
        match Reference::parse(&format!("{host}/probe")) {
            Ok(r) if r.registry == host => Ok(host),
            _ => Err(bad(
                "is not a registry host (write host[:port], e.g. registry.example.com:5000)",
            )),
        }
    }

    fn filter(&self, n: &MarkedYaml, path: &str) -> Result<Filter> {
        let mut filter = Filter::everything(line(n));
        for (key, value) in self.mapping(n, path, &["include", "exclude"])? {
            let field = join(path, key);
            let pattern = self.string(value, &field)?;
            let regex = Regex::new(&pattern).map_err(|e| {
                // The regex crate's message draws a caret under the pattern
                // over several lines; its last line says what is wrong.
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default();
                let why = why.strip_prefix("error: ").unwrap_or(why);
                self.err(
                    line(value),
                    &field,
                    format!("{pattern:?} is not a regular expression: {why}"),
                )
            })?;
            match key {
                "include" => filter.include = Some(regex),
                _ => filter.exclude = Some(regex),
            }
        }
        Ok(filter)
    }

    fn platforms(&self, n: &MarkedYaml, field: &str) -> Result<Vec<Platform>> {
        let mut platforms = Vec::new();
        for (i, item) in self.sequence(n, field)?.iter().enumerate() {
            let here = format!("{field}[{i}]");
            let text = self.string(item, &here)?;
            match Platform::parse(&text) {
                Ok(p) => platforms.push(p),
                Err(_) => {
                    return Err(self.err(
                        line(item),
                        &here,
                        format!(
                            "{text:?} is not os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
                        ),
                    ))
                }
            }
        }
        Ok(platforms)
    }

    /// Local transports' relative paths are the set file's directory's.
    fn relative(&self, spec: SourceSpec) -> SourceSpec {
        let join = |p: PathBuf| {
            if p.is_relative() {
                self.base.join(p)
            } else {
                p
            }
        };
        match spec {
            SourceSpec::OciDir { path, reference } => SourceSpec::OciDir {
                path: join(path),
                reference,
            },
            SourceSpec::OciArchive { path, reference } => SourceSpec::OciArchive {
                path: join(path),
                reference,
            },
            SourceSpec::DockerArchive { path, reference } => SourceSpec::DockerArchive {
                path: join(path),
                reference,
            },
            other => other,
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether a registry reference, as written, names a tag or a digest
/// (`Reference::parse` gives a bare one `latest`).
pub(super) fn names_tag_or_digest(r: &str) -> bool {
    r.contains('@') || r.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

fn type_name(n: &MarkedYaml) -> &'static str {
    match &n.data {
        YamlData::Value(Scalar::Null) => "no value",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(..) => "a tagged node",
        YamlData::Alias(_) => "an alias (anchors and aliases are not read)",
        YamlData::BadValue => "a value that does not parse",
    }
}
