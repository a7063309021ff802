//! The one ustar codec of the bundle format (spec §3): builds the 512-byte
//! member headers the writer emits and parses them for both readers, the
//! file reader ([`super::index`]) and the stream reader ([`super::stream`]),
//! so both accept exactly the same members.
//!
//! Not a general tar reader: pax and GNU extension headers, links, devices
//! and unsafe paths are refused, never interpreted. `tar::Header` is used
//! only as a view of the header fields; `tar::Archive`, which silently
//! applies extension headers, is not used anywhere in a bundle reader.

use super::format::{padded, BLOCK, MAX_BUNDLE};

/// Builds the ustar header of a regular member, as the writer emits it.
pub(crate) fn build_header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = tar::Header::new_ustar();
    // Member names are fixed names and blob paths: short ASCII.
    h.set_path(name).expect("member names are short ASCII");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    *h.as_bytes()
}

/// Checks a ustar header as the spec requires and returns name and size.
pub(crate) fn parse_header(block: &[u8; BLOCK]) -> std::result::Result<(String, u64), String> {
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(block);
    let stored = h
        .cksum()
        .map_err(|_| "the header checksum field is not a number".to_string())?;
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                b as u32
            }
        })
        .sum();
    if stored != computed {
        return Err("the tar header is damaged (checksum mismatch)".into());
    }
    if h.as_ustar().is_none() {
        return Err("the tar header is not ustar".into());
    }
    let kind = h.entry_type();
    if !matches!(kind, tar::EntryType::Regular) {
        return Err(format!(
            "it is a {kind:?} entry; bundles hold only regular files (links, devices and extensions are refused)"
        ));
    }
    let name = String::from_utf8(h.path_bytes().to_vec())
        .map_err(|_| "its name is not UTF-8".to_string())?;
    if name.starts_with('/') {
        return Err(format!("{name}: absolute paths are refused"));
    }
    if name
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(format!(
            "{name}: paths with '..', '.' or empty parts are refused"
        ));
    }
    let size = h
        .size()
        .map_err(|_| format!("{name}: the size field is not a number"))?;
    if size > MAX_BUNDLE {
        return Err(format!(
            "{name}: its size {size} is more than the {MAX_BUNDLE} bytes a bundle may hold"
        ));
    }
    Ok((name, size))
}

/// True for a block of zeros: the end-of-archive marker is two of them.
pub(crate) fn is_zero(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// The zero bytes that follow `size` bytes of member data to fill the block.
pub(crate) fn padding(size: u64) -> u64 {
    padded(size) - size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_builds() {
        let h = build_header("blobs/sha256/ab", 1234, 5);
        assert_eq!(parse_header(&h), Ok(("blobs/sha256/ab".to_string(), 1234)));
    }

    #[test]
    fn refuses_a_damaged_checksum_and_unsafe_paths() {
        let mut h = build_header("index.json", 1, 0);
        h[0] ^= 1;
        assert!(parse_header(&h).unwrap_err().contains("checksum"));
        // The tar crate will not write '..'; put it in by hand.
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..6].copy_from_slice(b"a/../b");
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        assert!(parse_header(h.as_bytes()).unwrap_err().contains(".."));
    }

    #[test]
    fn refuses_extension_headers() {
        let mut h = tar::Header::new_ustar();
        h.set_path("pax").unwrap();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_cksum();
        assert!(parse_header(h.as_bytes()).is_err());
    }
}
