//! Read-only file access over a directory or a tar archive, so the layout
//! and docker-archive readers work on both without knowing which.
//!
//! A tar archive is indexed once (member name → offset, size) and members are
//! then read with positional reads, so several can be open at once and none
//! is loaded whole. gzip- and zstd-compressed archives are decompressed into
//! an anonymous temporary file first, since they cannot be read at random.
//!
//! This reads archives made by other tools (`docker save`, `oci-archive`),
//! with the pax and GNU extensions the `tar` crate handles. It is not the
//! bundle's tar reader: a bundle is read by `bundle::tar`, which accepts only
//! the ustar subset the bundle format allows.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

pub(crate) trait Fs: Send + Sync {
    /// Opens a file by its slash-separated path; `Ok(None)` if there is none.
    fn open(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>>;
    /// Where this file system lives, for messages.
    fn location(&self) -> &Path;

    /// Reads a small file whole, refusing anything larger than `limit`.
    fn read_small(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some((r, size)) = self.open(path)? else {
            return Ok(None);
        };
        if size > limit {
            return Err(Error::BadArchive {
                path: self.location().join(path),
                reason: format!("{size} bytes is more than the {limit} allowed for this file"),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", self.location().join(path), e))?;
        Ok(Some(buf))
    }
}

/// Rejects absolute paths and `..`: names come from untrusted manifests.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

pub(crate) struct DirFs {
    root: PathBuf,
}

impl DirFs {
    pub fn open(root: &Path) -> Result<DirFs> {
        let meta = std::fs::metadata(root).map_err(|e| Error::io("open directory", root, e))?;
        if !meta.is_dir() {
            return Err(Error::BadArchive {
                path: root.to_path_buf(),
                reason: "not a directory (use oci-archive: for a tar file)".into(),
            });
        }
        Ok(DirFs {
            root: root.to_path_buf(),
        })
    }
}

impl Fs for DirFs {
    fn open(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        let Some(rel) = safe_relative(path) else {
            return Err(Error::BadArchive {
                path: self.root.clone(),
                reason: format!("refusing path {path:?} that leaves the directory"),
            });
        };
        let full = self.root.join(rel);
        match File::open(&full) {
            Ok(f) => {
                let size = f.metadata().map_err(|e| Error::io("stat", &full, e))?.len();
                Ok(Some((Box::new(f), size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open", &full, e)),
        }
    }

    fn location(&self) -> &Path {
        &self.root
    }
}

#[derive(Clone, Copy, Debug)]
struct Member {
    offset: u64,
    size: u64,
}

pub(crate) struct TarFs {
    path: PathBuf,
    file: Arc<File>,
    members: HashMap<String, Member>,
}

const SYMLINK_DEPTH: usize = 8;

impl TarFs {
    pub fn open(path: &Path) -> Result<TarFs> {
        let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| Error::io("read", path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("seek", path, e))?;
        let file = match &magic[..n] {
            [0x1f, 0x8b, ..] => decompress_to_temp(path, flate2::read::MultiGzDecoder::new(file))?,
            [0x28, 0xb5, 0x2f, 0xfd] => decompress_to_temp(
                path,
                zstd::stream::read::Decoder::new(file).map_err(|e| Error::io("read", path, e))?,
            )?,
            _ => file,
        };
        let members = index_tar(path, &file)?;
        Ok(TarFs {
            path: path.to_path_buf(),
            file: Arc::new(file),
            members,
        })
    }

    fn resolve(&self, name: &str) -> Option<Member> {
        let key = normalize(name)?;
        self.members.get(&key).copied()
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn decompress_to_temp(path: &Path, mut r: impl Read) -> Result<File> {
    let mut tmp =
        tempfile::tempfile().map_err(|e| Error::io("create temporary file for", path, e))?;
    io::copy(&mut r, &mut tmp).map_err(|e| Error::BadArchive {
        path: path.to_path_buf(),
        reason: format!("cannot decompress: {e}"),
    })?;
    Ok(tmp)
}

fn normalize(name: &str) -> Option<String> {
    safe_relative(name).map(|p| p.to_string_lossy().to_string())
}

/// Indexes regular members and resolves symlinks inside the archive (old
/// `docker save` links shared layers). Truncation and lying sizes are errors.
fn index_tar(path: &Path, file: &File) -> Result<HashMap<String, Member>> {
    let bad = |reason: String| Error::BadArchive {
        path: path.to_path_buf(),
        reason,
    };
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let mut archive = tar::Archive::new(PositionalReader::new(Arc::new(
        file.try_clone().map_err(|e| Error::io("open", path, e))?,
    )));
    let mut members = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("damaged or truncated tar: {e}")))?;
        let raw_name = entry
            .path()
            .map_err(|e| bad(format!("bad member name: {e}")))?
            .to_string_lossy()
            .to_string();
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_symlink() || kind.is_hard_link()) {
            // Directories (`./` among them) and other entries hold no blobs.
            continue;
        }
        let Some(name) = normalize(&raw_name) else {
            return Err(bad(format!("member {raw_name:?} has an unsafe path")));
        };
        if kind.is_file() {
            let offset = entry.raw_file_position();
            let size = entry.size();
            if offset.checked_add(size).is_none_or(|end| end > file_len) {
                return Err(bad(format!(
                    "member {name} claims {size} bytes but the archive ends first (truncated?)"
                )));
            }
            if members
                .insert(name.clone(), Member { offset, size })
                .is_some()
            {
                return Err(bad(format!("member {name} appears twice")));
            }
        } else {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.to_string_lossy().to_string())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() {
                let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                dir.join(&target).to_string_lossy().to_string()
            } else {
                target
            };
            links.push((name, resolved));
        }
    }
    // Resolve links to regular members, following chains a few steps.
    for _ in 0..SYMLINK_DEPTH {
        let mut progress = false;
        links.retain(|(name, target)| {
            let Some(t) = resolve_dots(target) else {
                return true;
            };
            match members.get(&t).copied() {
                Some(m) => {
                    members.insert(name.clone(), m);
                    progress = true;
                    false
                }
                None => true,
            }
        });
        if !progress {
            break;
        }
    }
    Ok(members)
}

/// Resolves `a/../b` inside the archive; `None` if it climbs out.
fn resolve_dots(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            x => parts.push(x),
        }
    }
    Some(parts.join("/"))
}

impl Fs for TarFs {
    fn open(&self, path: &str) -> Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        Ok(self.resolve(path).map(|m| {
            let r = PositionalReader {
                file: self.file.clone(),
                pos: m.offset,
                end: m.offset + m.size,
            };
            (Box::new(r) as Box<dyn Read + Send>, m.size)
        }))
    }

    fn location(&self) -> &Path {
        &self.path
    }
}

/// Reads a byte range of a shared file with `pread`, so readers don't fight
/// over one seek position.
pub(crate) struct PositionalReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl PositionalReader {
    fn new(file: Arc<File>) -> PositionalReader {
        PositionalReader {
            file,
            pos: 0,
            end: u64::MAX,
        }
    }
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.end - self.pos;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PositionalReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_leave_the_root() {
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../b").is_none());
        assert_eq!(safe_relative("./a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(resolve_dots("a/../b/c").as_deref(), Some("b/c"));
        assert_eq!(resolve_dots("../b"), None);
    }
}
