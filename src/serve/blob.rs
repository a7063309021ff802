//! Reading a blob out of the bundles of a [`View`] for a client: the whole
//! blob hashed as it is read, the last byte held until its digest checks
//! out, damage repaired from parity in memory once per bundle, and a read
//! that fails in one bundle going on from another that holds the blob.
//!
//! Not for deciding what a request answers (`routes.rs`) nor for the
//! merged view itself (`view.rs`).

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::view::View;
use crate::bundle::{Bundle, OpenOptions, Opened};
use crate::model::Digest;

/// What is copied, hashed and sent at a time: small enough to stay in
/// cache between the three, a raw zstd block's size.
const PIECE: usize = 128 << 10;

/// Why a blob's response was cut.
#[derive(Debug)]
pub enum Cut {
    /// The client went away or stalled past the timeout.
    Client(io::Error),
    /// The bundle could not give the bytes, or they failed their digest.
    Damage(String),
}

impl View {
    /// Streams bytes `start..end` of a blob of `size` bytes from bundle
    /// `slot` into `out`, on the caller's thread. The whole blob is read
    /// and hashed (`read_checked`); bytes outside the range are hashed but
    /// not sent, and the last byte is held back until the digest checks
    /// out, so a damaged blob never arrives complete.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_blob(
        &self,
        slot: usize,
        digest: &Digest,
        size: u64,
        start: u64,
        end: u64,
        out: &mut dyn Write,
        sent: &mut dyn FnMut(u64),
    ) -> std::result::Result<(), Cut> {
        let mut pos = 0u64;
        let mut held: Option<u8> = None;
        let mut client: Option<io::Error> = None;
        let read = self.read_checked(slot, digest, size, &mut |chunk| {
            let n = chunk.len() as u64;
            let (lo, hi) = (pos.max(start), (pos + n).min(end));
            pos += n;
            if lo >= hi {
                return true;
            }
            let part = &chunk[(lo - (pos - n)) as usize..(hi - (pos - n)) as usize];
            let body = if hi == end {
                held = part.last().copied();
                &part[..part.len() - 1]
            } else {
                part
            };
            match out.write_all(body) {
                Ok(()) => {
                    sent(body.len() as u64);
                    true
                }
                Err(e) => {
                    client = Some(e);
                    false
                }
            }
        });
        if let Some(e) = client {
            return Err(Cut::Client(e));
        }
        read.map_err(Cut::Damage)?;
        if let Some(b) = held {
            out.write_all(&[b]).map_err(Cut::Client)?;
            sent(1);
        }
        out.flush().map_err(Cut::Client)
    }

    /// Reads a whole blob from bundle `slot`, handing each piece to `emit`
    /// (which returns false to stop), and checks its size and digest over
    /// exactly the bytes handed out: each piece is copied out of the
    /// mapped bundle once, into a buffer small enough to stay in cache,
    /// and hashed and handed out from there, so what is sent is what was
    /// hashed even if the file changed underneath. Damage that parity
    /// covers is repaired in memory (once per bundle) and the reading goes
    /// on from where it stopped; otherwise it goes on from another bundle
    /// holding the blob.
    pub(super) fn read_checked(
        &self,
        slot: usize,
        digest: &Digest,
        size: u64,
        emit: &mut dyn FnMut(&[u8]) -> bool,
    ) -> std::result::Result<(), String> {
        // The bundles to read it from, the one asked for first.
        let mut order = vec![slot];
        if let Some(holders) = self.blobs.get(digest) {
            order.extend(holders.iter().map(|&(i, _)| i).filter(|&i| i != slot));
        }
        let mut at = 0;
        let mut hash = Sha256::new();
        let mut pos = 0u64;
        let mut repaired_once = false;
        let mut piece = Vec::with_capacity(PIECE);
        'outer: loop {
            let slot = order[at];
            let s = &self.slots[slot];
            let bundle = s.bundle.read().expect("not poisoned").clone();
            let file = bundle.file();
            let member = file
                .member(&digest.layout_path())
                .ok_or_else(|| format!("{} holds no {digest}", s.path.display()))?;
            let mut reader = file.open_member_direct(member).map_err(|e| e.to_string())?;
            // After a repair or a switch: skip what was already handed out;
            // the hash goes on over exactly those bytes.
            let mut skip = pos;
            loop {
                let chunk = match reader.fill_buf() {
                    Ok(c) => c,
                    Err(e) => {
                        let why = format!("{e}{}", self.volumes_of(slot, digest));
                        if !repaired_once && self.repair(slot) {
                            repaired_once = true;
                            log::warn!("{why}; repaired from parity, going on");
                            continue 'outer;
                        }
                        if at + 1 < order.len() {
                            at += 1;
                            repaired_once = false;
                            log::warn!(
                                "{why}; going on from {}",
                                self.slots[order[at]].path.display()
                            );
                            continue 'outer;
                        }
                        return Err(why);
                    }
                };
                if chunk.is_empty() {
                    break;
                }
                if skip > 0 {
                    let k = (skip as usize).min(chunk.len());
                    reader.consume(k);
                    skip -= k as u64;
                    continue;
                }
                let n = chunk.len().min(PIECE);
                piece.clear();
                piece.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                hash.update(&piece);
                pos += n as u64;
                if !emit(&piece) {
                    return Err("the client went away".into());
                }
            }
            break;
        }
        let s = &self.slots[order[at]];
        if pos != size {
            return Err(format!(
                "blob {digest} in {} has {pos} bytes, its record says {size}",
                s.path.display()
            ));
        }
        let got = Digest::from_raw(hash.finalize().into());
        if got != *digest {
            return Err(format!(
                "blob {digest} in {} does not match its digest (it hashes to {got}): it is damaged{}",
                s.path.display(),
                self.volumes_of(order[at], digest)
            ));
        }
        Ok(())
    }

    /// The volumes a blob's bytes lie in, for a damage message.
    fn volumes_of(&self, slot: usize, digest: &Digest) -> String {
        let s = &self.slots[slot];
        let bundle = s.bundle.read().expect("not poisoned").clone();
        let Some(m) = bundle.file().member(&digest.layout_path()) else {
            return String::new();
        };
        let (lo, hi) = bundle.file().member_range(m);
        let names: Vec<&str> = s
            .volumes
            .iter()
            .filter(|(a, b, _)| *a < hi && lo < *b)
            .map(|(_, _, n)| n.as_str())
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" (in {})", names.join(", "))
        }
    }

    /// Opens bundle `slot` again with a full check and in-memory repair
    /// from its parity; true if a repaired bundle replaced it. Tried once
    /// per bundle: a second damage after that is beyond the parity. A
    /// read that met the damage while another repaired it is told the
    /// outcome, so it goes on from the repaired bundle too.
    fn repair(&self, slot: usize) -> bool {
        let s = &self.slots[slot];
        if !s.has_parity {
            return false;
        }
        let mut tried = s.repaired.lock().expect("not poisoned");
        if let Some(done) = *tried {
            return done;
        }
        *tried = Some(false);
        log::warn!(
            "damage in {}: checking it against its parity",
            s.path.display()
        );
        let opened = match &self.keys {
            Some(k) => Bundle::<Opened>::open_for_key(&s.path, OpenOptions::FULL, k)
                .and_then(|b| b.check_signature(k)),
            None => Bundle::<Opened>::open_with(&s.path, OpenOptions::FULL)
                .and_then(|b| b.without_signature_check()),
        };
        let old_id = s.bundle.read().expect("not poisoned").id().clone();
        match opened {
            Ok(b) if *b.id() == old_id => {
                for n in b.file().notices() {
                    log::warn!("{n}");
                }
                *s.bundle.write().expect("not poisoned") = Arc::new(b);
                *tried = Some(true);
                true
            }
            Ok(_) => {
                log::error!(
                    "{} changed on disk while served; not repaired",
                    s.path.display()
                );
                false
            }
            Err(e) => {
                log::error!("cannot repair {}: {e}", s.path.display());
                false
            }
        }
    }
}
