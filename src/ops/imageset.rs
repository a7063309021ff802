//! Image sets kept in a file (`pack -f SET.yaml`, `copy -f SET.yaml`):
//! reading the file, the schema of docs/image-sets.md with a line and a
//! field in every refusal, and resolving tag and repository filters into
//! sources.
//!
//! Parsing does no I/O beyond reading the file, so every mistake in it is
//! found before a registry is asked anything. Not for walking or checking
//! images: what a set resolves to is opened like any other source, and the
//! plan reads it.

use std::io::Read;
use std::path::{Path, PathBuf};

use regex::Regex;
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::transport::SourceSpec;
use crate::error::{Error, Result};
use crate::model::image::Platform;
use crate::model::reference::Reference;
use crate::registry::{RegistryContext, RegistrySource};
use crate::source::Source;

/// The `apiVersion` and `kind` this release reads.
pub const API_VERSION: &str = "airlock/v1";
pub const KIND: &str = "ImageSet";

/// Tags or repositories named in a "selects nothing" error, at most.
const SHOWN_NAMES: usize = 20;

/// What a `-f FILE` holds: the one-source-per-line list, or an image set.
pub enum SourceFile {
    List(Vec<String>),
    Set(ImageSet),
}

/// A parsed image set; local paths already resolved against its directory.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// As the user named it (`-` for standard input), for messages.
    pub file: PathBuf,
    pub images: Vec<Entry>,
    pub catalogs: Vec<Catalog>,
    /// `referrers:`; absent leaves it to the command line.
    pub referrers: Option<bool>,
}

/// One `images[]` entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub line: usize,
    /// `ref` as written: what `inspect` shows as the image's source.
    pub text: String,
    pub spec: SourceSpec,
    /// `platforms`; `None` leaves it to `--platform`.
    pub platforms: Option<Vec<Platform>>,
    /// `tags`, on a registry repository named without tag or digest.
    pub tags: Option<Filter>,
}

/// One `catalogs[]` entry.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub line: usize,
    pub registry: String,
    pub repositories: Filter,
    /// `tags`: applied to every repository kept; `None` keeps every tag.
    pub tags: Option<Filter>,
    pub platforms: Option<Vec<Platform>>,
}

/// `{include, exclude}`: a name is kept when it matches `include` (absent:
/// everything) and does not match `exclude`.
#[derive(Clone, Debug)]
pub struct Filter {
    pub line: usize,
    pub include: Option<Regex>,
    pub exclude: Option<Regex>,
}

impl Filter {
    fn everything(line: usize) -> Filter {
        Filter {
            line,
            include: None,
            exclude: None,
        }
    }

    pub fn keeps(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(name))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(name))
    }

    fn describe(&self) -> String {
        let show = |r: &Option<Regex>| r.as_ref().map_or("", |r| r.as_str()).to_string();
        format!(
            "include {:?} exclude {:?}",
            show(&self.include),
            show(&self.exclude)
        )
    }
}

/// Refuses `-f -` when something else of the same command reads standard
/// input too (`bundle:-`, `--password-stdin`): `others` names those.
pub fn check_stdin(file: Option<&Path>, others: &[&str]) -> Result<()> {
    match others.first() {
        Some(other) if file == Some(Path::new("-")) => Err(Error::Usage(format!(
            "-f - and {other} both read standard input; write the image set or list to a file"
        ))),
        _ => Ok(()),
    }
}

/// Reads `-f FILE` (`-`: standard input). It is an image set when its name
/// ends in `.yaml` or `.yml`, or when its first line that is not blank, a
/// `#` comment or `---` starts with `apiVersion:`; otherwise it is the list.
pub fn read(path: &Path) -> Result<SourceFile> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| Error::io("read source list", path, e))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| Error::io("read source list", path, e))?
    };
    if !is_set(path, &text) {
        return Ok(SourceFile::List(parse_list(&text)));
    }
    // Standard input's paths are relative to the current directory.
    let base = match path.parent() {
        Some(p) if path != Path::new("-") => p.to_path_buf(),
        _ => PathBuf::new(),
    };
    parse(&text, path, &base).map(SourceFile::Set)
}

/// The sources of a one-source-per-line list: `#` comments (whole lines,
/// or after " #") and blank lines ignored.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_once(" #").map_or(l, |(a, _)| a).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn is_set(path: &Path, text: &str) -> bool {
    let named = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    named
        || text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
            .is_some_and(|l| l.starts_with("apiVersion:"))
}

/// Parses an image set; `file` names it in errors, relative local paths
/// are taken from `base`.
pub fn parse(text: &str, file: &Path, base: &Path) -> Result<ImageSet> {
    let p = Parser { file, base };
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
    if set.images.is_empty() && set.catalogs.is_empty() {
        return Err(p.err(
            line(root),
            "images",
            "the set names no images and no catalogs",
        ));
    }
    Ok(set)
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
fn names_tag_or_digest(r: &str) -> bool {
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

impl ImageSet {
    pub fn needs_registry(&self) -> bool {
        !self.catalogs.is_empty() || self.images.iter().any(|e| e.spec.is_registry())
    }

    /// The registry hosts the set reads from.
    pub fn hosts(&self) -> Vec<String> {
        let images = self.images.iter().filter_map(|e| match &e.spec {
            SourceSpec::Registry(r) => Reference::parse(r).ok().map(|r| r.registry),
            _ => None,
        });
        images
            .chain(self.catalogs.iter().map(|c| c.registry.clone()))
            .collect()
    }

    /// Referrers travel unless the command line or the set turns them off.
    pub fn referrers(&self, command_line: bool) -> bool {
        command_line && self.referrers != Some(false)
    }

    /// The set as a list of lines, for a journal that names a copy.
    pub fn describe(&self) -> Vec<String> {
        let platforms = |p: &Option<Vec<Platform>>| match p {
            Some(p) => p.iter().map(|p| format!(" --platform {p}")).collect(),
            None => String::new(),
        };
        let images = self.images.iter().map(|e| {
            let tags = e.tags.as_ref().map(|f| format!(" tags {}", f.describe()));
            format!(
                "{}{}{}",
                e.text,
                tags.unwrap_or_default(),
                platforms(&e.platforms)
            )
        });
        let catalogs = self.catalogs.iter().map(|c| {
            let tags = c.tags.as_ref().map(|f| format!(" tags {}", f.describe()));
            format!(
                "--catalog {} repositories {}{}{}",
                c.registry,
                c.repositories.describe(),
                tags.unwrap_or_default(),
                platforms(&c.platforms)
            )
        });
        images.chain(catalogs).collect()
    }

    fn selects_nothing(&self, line: usize, field: String, reason: String, hint: &str) -> Error {
        Error::ImageSet {
            file: self.file.clone(),
            line,
            field,
            reason,
            hint: Some(hint.into()),
        }
    }
}

/// A source the set resolved to, with the platforms its entry names
/// (`None`: those of `--platform`).
pub type Opened = (Box<dyn Source>, Option<Vec<Platform>>);

/// Opens what the set names: each image, each repository's tags that its
/// filter keeps, each catalog's repositories. With `stream`, registry
/// sources stream (see [`RegistrySource::streaming`]). Problems are
/// collected so that all of them are reported together.
pub fn open(
    set: &ImageSet,
    ctx: Option<&RegistryContext>,
    stream: bool,
    problems: &mut Vec<Error>,
) -> Vec<Opened> {
    let mut opened = Vec::new();
    for (i, entry) in set.images.iter().enumerate() {
        let source = match (&entry.tags, &entry.spec, ctx) {
            (Some(filter), SourceSpec::Registry(r), Some(ctx)) => {
                filtered(set, i, filter, r, ctx).map(|s| Box::new(s.streaming(stream)) as _)
            }
            _ => entry.spec.open_as(&entry.text, ctx, stream),
        };
        match source {
            Ok(s) => opened.push((s, entry.platforms.clone())),
            Err(e) => problems.push(e),
        }
    }
    if let Some(ctx) = ctx {
        for (i, catalog) in set.catalogs.iter().enumerate() {
            match catalog_sources(set, i, catalog, ctx) {
                Ok(sources) => opened.extend(sources.into_iter().map(|s| {
                    (
                        Box::new(s.streaming(stream)) as _,
                        catalog.platforms.clone(),
                    )
                })),
                Err(e) => problems.push(e),
            }
        }
    }
    opened
}

/// `images[i]`: the tags of repository `r` that `filter` keeps; none is an
/// error naming the tags seen.
fn filtered(
    set: &ImageSet,
    i: usize,
    filter: &Filter,
    r: &str,
    ctx: &RegistryContext,
) -> Result<RegistrySource> {
    let repo = Reference::parse(r)?;
    // Sorted: registries list tags in no promised order, and the bundle's
    // order and this message should not depend on it.
    let mut seen = RegistrySource::tags(&repo, ctx)?;
    seen.sort();
    let kept: Vec<String> = seen.iter().filter(|t| filter.keeps(t)).cloned().collect();
    if kept.is_empty() {
        return Err(set.selects_nothing(
            filter.line,
            format!("images[{i}].tags"),
            format!(
                "selects no tag of {} ({}); its tags: {}",
                repo.name(),
                filter.describe(),
                shown(&seen)
            ),
            "change the filter's include or exclude so that it keeps a tag",
        ));
    }
    RegistrySource::tagged(&format!("docker://{}", repo.name()), &repo, &kept, ctx)
}

/// `catalogs[i]`: every repository the registry lists that the filter
/// keeps, each with the tags its `tags` filter keeps (a repository left
/// with none is skipped; a catalog left with none is an error).
fn catalog_sources(
    set: &ImageSet,
    i: usize,
    catalog: &Catalog,
    ctx: &RegistryContext,
) -> Result<Vec<RegistrySource>> {
    let host = &catalog.registry;
    let listed = RegistrySource::catalog(host, ctx)?;
    let kept: Vec<&String> = listed
        .iter()
        .filter(|r| catalog.repositories.keeps(r))
        .collect();
    if kept.is_empty() {
        return Err(set.selects_nothing(
            catalog.repositories.line,
            format!("catalogs[{i}].repositories"),
            format!(
                "selects no repository of {host} ({}); it lists: {}",
                catalog.repositories.describe(),
                shown(&listed)
            ),
            "change the filter's include or exclude so that it keeps a repository",
        ));
    }
    let mut sources = Vec::new();
    let mut seen_tags = Vec::new();
    for name in kept {
        let repo = Reference::parse(&format!("{host}/{name}"))?;
        let mut tags = RegistrySource::tags(&repo, ctx)?;
        tags.sort();
        if let Some(filter) = &catalog.tags {
            seen_tags.extend(tags.iter().map(|t| format!("{name}:{t}")));
            tags.retain(|t| filter.keeps(t));
        }
        if !tags.is_empty() {
            let source = format!("docker://{}", repo.name());
            sources.push(RegistrySource::tagged(&source, &repo, &tags, ctx)?);
        }
    }
    match &catalog.tags {
        Some(filter) if sources.is_empty() => Err(set.selects_nothing(
            filter.line,
            format!("catalogs[{i}].tags"),
            format!(
                "selects no tag of the repositories kept on {host} ({}); their tags: {}",
                filter.describe(),
                shown(&seen_tags)
            ),
            "change the filter's include or exclude so that it keeps a tag",
        )),
        _ => Ok(sources),
    }
}

/// Names for a message: the first few, and how many more.
fn shown(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    let mut s = names
        .iter()
        .take(SHOWN_NAMES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN_NAMES {
        s.push_str(&format!(" and {} more", names.len() - SHOWN_NAMES));
    }
    s
}

#[cfg(test)]
mod tests;
