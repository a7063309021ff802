//! Image sets kept in a file (`pack -f SET.yaml`, `copy -f SET.yaml`):
//! reading the file, the schema of docs/image-sets.md with a line and a
//! field in every refusal, and resolving tag and repository filters into
//! sources.
//!
//! Parsing does no I/O beyond reading the file, so every mistake in it is
//! found before a registry is asked anything. Not for walking or checking
//! images: what a set resolves to is opened like any other source, and the
//! plan reads it.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::transport::SourceSpec;
use crate::error::{Error, Result};
use crate::model::image::Platform;
use crate::model::reference::Reference;
use crate::registry::{RegistryContext, RegistrySource};
use crate::source::Source;

mod parse;
pub use parse::parse;

/// The `apiVersion` and `kind` this release reads.
pub const API_VERSION: &str = "airlock/v1";
pub const KIND: &str = "ImageSet";

/// A `-f` file larger than this is refused unread (a set or list of some
/// hundred thousand sources is a few MiB).
const MAX_SOURCE_FILE: u64 = 32 << 20;

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
    /// As the user named it (`(standard input)` for `-`), for messages.
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
    // Bounded: `-f /dev/zero` or a mistaken multi-gigabyte file must not
    // be read into memory whole.
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_SOURCE_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_SOURCE_FILE + 1).read_to_string(&mut text))
    };
    read.map_err(|e| Error::io("read source list", path, e))?;
    if text.len() as u64 > MAX_SOURCE_FILE {
        return Err(Error::Usage(format!(
            "-f {}: more than {} MiB, larger than any image set or source list; check the file name",
            path.display(),
            MAX_SOURCE_FILE >> 20
        )));
    }
    if !is_set(path, &text) {
        return Ok(SourceFile::List(parse_list(&text)));
    }
    // Standard input's paths are relative to the current directory.
    if path == Path::new("-") {
        return parse(&text, Path::new("(standard input)"), Path::new("")).map(SourceFile::Set);
    }
    let base = path.parent().unwrap_or(Path::new(""));
    parse(&text, path, base).map(SourceFile::Set)
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
    // The registry images the entries name, `REGISTRY/REPO:TAG`, with the
    // entry that names them. A `tags` filter or a catalog leaves the ones an
    // entry names by tag to that entry (and its platforms) rather than
    // naming them a second time, which the plan refuses.
    let mut named: HashMap<String, usize> = set
        .images
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match (&entry.spec, &entry.tags) {
            (SourceSpec::Registry(r), None) => Reference::parse(r)
                .ok()
                .filter(|r| r.digest.is_none())
                .map(|r| (r.to_string(), i)),
            _ => None,
        })
        .collect();
    for (i, entry) in set.images.iter().enumerate() {
        let source = match (&entry.tags, &entry.spec, ctx) {
            (Some(filter), SourceSpec::Registry(r), Some(ctx)) => {
                match filtered(set, i, filter, r, ctx, &mut named) {
                    Ok(None) => continue,
                    Ok(Some(s)) => Ok(Box::new(s.streaming(stream)) as _),
                    Err(e) => Err(e),
                }
            }
            _ => entry.spec.open_as(&entry.text, ctx, stream),
        };
        match source {
            Ok(s) => opened.push((s, entry.platforms.clone())),
            Err(e) => problems.push(e),
        }
    }
    if let Some(ctx) = ctx {
        let named: HashSet<String> = named.into_keys().collect();
        for (i, catalog) in set.catalogs.iter().enumerate() {
            match catalog_sources(set, i, catalog, ctx, &named) {
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
/// error naming the tags seen. A kept tag that an entry names by tag is
/// left to it (`None` when that leaves nothing); one that another filter
/// kept already is refused, naming both entries. What is kept is added to
/// `named`.
fn filtered(
    set: &ImageSet,
    i: usize,
    filter: &Filter,
    r: &str,
    ctx: &RegistryContext,
    named: &mut HashMap<String, usize>,
) -> Result<Option<RegistrySource>> {
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
    let mut mine = Vec::new();
    for tag in kept {
        let name = format!("{}:{tag}", repo.name());
        let Some(&j) = named.get(&name) else {
            mine.push(tag);
            continue;
        };
        if let Some(first) = &set.images[j].tags {
            return Err(set.selects_nothing(
                filter.line,
                format!("images[{i}].tags"),
                format!(
                    "keeps {name}, which the filter of images[{j}] (line {}) keeps already",
                    first.line
                ),
                "name each image once: change one of the two filters so that they keep different tags",
            ));
        }
    }
    if mine.is_empty() {
        return Ok(None);
    }
    for tag in &mine {
        named.insert(format!("{}:{tag}", repo.name()), i);
    }
    let source = RegistrySource::tagged(&format!("docker://{}", repo.name()), &repo, &mine, ctx)?;
    Ok(Some(source))
}

/// `catalogs[i]`: every repository the registry lists that the filter
/// keeps, each with the tags its `tags` filter keeps (a repository left
/// with none is skipped; a catalog left with none is an error). A tag an
/// `images` entry names (`named`) is left to that entry.
fn catalog_sources(
    set: &ImageSet,
    i: usize,
    catalog: &Catalog,
    ctx: &RegistryContext,
    named: &HashSet<String>,
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
    let kept_names: Vec<String> = kept.iter().map(|n| n.to_string()).collect();
    let mut sources = Vec::new();
    let mut any_tag = false;
    let mut seen_tags = Vec::new();
    for name in kept {
        let repo = Reference::parse(&format!("{host}/{name}"))?;
        let mut tags = RegistrySource::tags(&repo, ctx)?;
        tags.sort();
        if let Some(filter) = &catalog.tags {
            seen_tags.extend(tags.iter().map(|t| format!("{name}:{t}")));
            tags.retain(|t| filter.keeps(t));
        }
        any_tag |= !tags.is_empty();
        tags.retain(|t| !named.contains(&format!("{}:{t}", repo.name())));
        if !tags.is_empty() {
            let source = format!("docker://{}", repo.name());
            sources.push(RegistrySource::tagged(&source, &repo, &tags, ctx)?);
        }
    }
    match &catalog.tags {
        Some(filter) if !any_tag => Err(set.selects_nothing(
            filter.line,
            format!("catalogs[{i}].tags"),
            format!(
                "selects no tag of the repositories kept on {host} ({}); their tags: {}",
                filter.describe(),
                shown(&seen_tags)
            ),
            "change the filter's include or exclude so that it keeps a tag",
        )),
        // Repositories whose every manifest was deleted stay in the
        // catalog with no tag: a catalog of only those must not be dropped
        // silently from the set.
        None if !any_tag => Err(set.selects_nothing(
            catalog.line,
            format!("catalogs[{i}]"),
            format!(
                "the repositories kept on {host} ({}) hold no tag: {}",
                catalog.repositories.describe(),
                shown(&kept_names)
            ),
            "tag an image in one of them, or change the repositories filter",
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
