//! The cache against itself: followers, and two caches on one directory,
//! which lock each other out as two processes do (`flock` locks belong to
//! open files, not to processes).

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

const MIB: usize = 1 << 20;

/// Pseudo-random bytes (xorshift), so no two chunks are alike.
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A response body fed by the test, chunk by chunk; ends when the sender
/// is dropped.
struct Feed {
    rx: Receiver<Vec<u8>>,
    chunk: io::Cursor<Vec<u8>>,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.chunk.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(next) => self.chunk = io::Cursor::new(next),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// A downloader whose first request is the fed body and whose later ones
/// fail, as a network that went away.
fn fed() -> (Sender<Vec<u8>>, impl FnMut(u64) -> Result<Download>) {
    let (tx, rx) = channel();
    let mut rx = Some(rx);
    let download = move |_offset| match rx.take() {
        Some(rx) => Ok(Download {
            body: Box::new(Feed {
                rx,
                chunk: io::Cursor::new(Vec::new()),
            }),
            from_offset: true,
        }),
        None => Err(Error::Unsupported {
            what: "test download".into(),
            reason: "the network went away".into(),
        }),
    };
    (tx, download)
}

/// Notes reported, for the test to look at.
type Notes = Arc<Mutex<Vec<String>>>;

fn ensure(
    cache: &BlobCache,
    d: &Digest,
    size: u64,
    download: impl FnMut(u64) -> Result<Download>,
    notes: &Notes,
) -> Result<()> {
    let report = Report {
        bytes: &|_| {},
        held: &|_| {},
        note: &|line| notes.lock().unwrap().push(line.to_string()),
    };
    cache.ensure(d, size, "test blob", 1, download, &report)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Follows the download of `d` on its own thread (a busy loop must not
/// hang the test) and sends back what it read.
fn follow(cache: &Arc<BlobCache>, d: &Digest, size: u64) -> Receiver<Result<Vec<u8>>> {
    let (tx, rx) = channel();
    let (cache, d) = (cache.clone(), d.clone());
    std::thread::spawn(move || {
        let read = || -> Result<Vec<u8>> {
            let mut r = cache.open_or_follow(&d, size)?.expect("claimed");
            let mut out = Vec::new();
            r.read_to_end(&mut out)
                .map_err(|e| Error::io("read", "follower", e))?;
            Ok(out)
        };
        let _ = tx.send(read());
    });
    rx
}

#[test]
fn a_follower_reads_the_bytes_hashed_though_the_partial_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(BlobCache::open(dir.path()).unwrap());
    let blob = data(3 * MIB);
    let (d, size) = (Digest::of(&blob), blob.len() as u64);
    let partial = cache.partial(&d);
    let (feed, download) = fed();
    let owner = {
        let (cache, d) = (cache.clone(), d.clone());
        std::thread::spawn(move || ensure(&cache, &d, size, download, &Notes::default()))
    };
    feed.send(blob[..MIB].to_vec()).unwrap();
    wait_until("a MiB is written", || len_of(&partial) == MIB as u64);
    // Another program puts a different file in its place.
    let other = dir.path().join("other");
    std::fs::write(&other, vec![0u8; MIB / 2]).unwrap();
    std::fs::rename(&other, &partial).unwrap();
    let followed = follow(&cache, &d, size);
    feed.send(blob[MIB..].to_vec()).unwrap();
    drop(feed);
    let read = followed
        .recv_timeout(Duration::from_secs(10))
        .expect("the follower returns within 10 s");
    assert!(read.unwrap() == blob, "the follower read other bytes");
    owner.join().unwrap().unwrap();
    // And the stranger's file is not taken for the blob.
    if let Ok(cached) = std::fs::read(cache.path(&d)) {
        assert!(cached == blob, "another file was moved into blobs/");
    }
}

#[test]
fn a_follower_fails_at_once_when_the_file_shrinks_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(BlobCache::open(dir.path()).unwrap());
    let blob = data(3 * MIB);
    let (d, size) = (Digest::of(&blob), blob.len() as u64);
    let partial = cache.partial(&d);
    let (feed, download) = fed();
    let owner = {
        let (cache, d) = (cache.clone(), d.clone());
        std::thread::spawn(move || ensure(&cache, &d, size, download, &Notes::default()))
    };
    feed.send(blob[..2 * MIB].to_vec()).unwrap();
    wait_until("two MiB are written", || len_of(&partial) == 2 * MIB as u64);
    std::thread::sleep(Duration::from_millis(50));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_len(100)
        .unwrap();
    // The download is still open: the follower must not wait for it.
    let followed = follow(&cache, &d, size);
    let err = followed
        .recv_timeout(Duration::from_secs(10))
        .expect("the follower returns within 10 s")
        .unwrap_err()
        .to_string();
    assert!(err.contains("another program truncated it"), "{err}");
    drop(feed);
    assert!(owner.join().unwrap().is_err());
}

#[test]
fn a_second_process_waits_for_the_first_and_downloads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(BlobCache::open(dir.path()).unwrap());
    let second = Arc::new(BlobCache::open(dir.path()).unwrap());
    let blob = data(3 * MIB);
    let (d, size) = (Digest::of(&blob), blob.len() as u64);
    let (feed, download) = fed();
    let owner = {
        let (cache, d) = (first.clone(), d.clone());
        std::thread::spawn(move || ensure(&cache, &d, size, download, &Notes::default()))
    };
    feed.send(blob[..MIB].to_vec()).unwrap();
    wait_until("a MiB is written", || {
        len_of(&first.partial(&d)) == MIB as u64
    });
    let notes = Notes::default();
    let waiter = {
        let (cache, d, notes) = (second.clone(), d.clone(), notes.clone());
        std::thread::spawn(move || {
            let refuse = |_| -> Result<Download> { panic!("the waiter downloads") };
            ensure(&cache, &d, size, refuse, &notes)
        })
    };
    wait_until("the second says it waits", || {
        notes.lock().unwrap().iter().any(|n| n.contains("waiting"))
    });
    feed.send(blob[MIB..].to_vec()).unwrap();
    drop(feed);
    owner.join().unwrap().unwrap();
    waiter.join().unwrap().unwrap();
    assert_eq!(second.downloaded(), 0);
    assert_eq!(first.downloaded(), size);
    let mut read = Vec::new();
    let mut r = second.open_or_follow(&d, size).unwrap().unwrap();
    r.read_to_end(&mut read).unwrap();
    assert!(read == blob);
}

#[test]
fn a_waiter_takes_over_the_download_of_a_process_that_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(BlobCache::open(dir.path()).unwrap());
    let second = Arc::new(BlobCache::open(dir.path()).unwrap());
    let blob = data(3 * MIB);
    let (d, size) = (Digest::of(&blob), blob.len() as u64);
    let (feed, download) = fed();
    let owner = {
        let (cache, d) = (first.clone(), d.clone());
        std::thread::spawn(move || ensure(&cache, &d, size, download, &Notes::default()))
    };
    feed.send(blob[..MIB].to_vec()).unwrap();
    wait_until("a MiB is written", || {
        len_of(&first.partial(&d)) == MIB as u64
    });
    let notes = Notes::default();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let waiter = {
        let (cache, d, notes, asked) = (second.clone(), d.clone(), notes.clone(), asked.clone());
        let rest = blob.clone();
        std::thread::spawn(move || {
            let resume = |offset: u64| -> Result<Download> {
                asked.lock().unwrap().push(offset);
                Ok(Download {
                    body: Box::new(io::Cursor::new(rest[offset as usize..].to_vec())),
                    from_offset: true,
                })
            };
            ensure(&cache, &d, size, resume, &notes)
        })
    };
    wait_until("the second says it waits", || {
        notes.lock().unwrap().iter().any(|n| n.contains("waiting"))
    });
    // The first one's connection ends and it cannot reconnect.
    drop(feed);
    assert!(owner.join().unwrap().is_err());
    waiter.join().unwrap().unwrap();
    assert_eq!(*asked.lock().unwrap(), [MIB as u64]);
    assert_eq!(second.downloaded(), size - MIB as u64);
    let notes = notes.lock().unwrap().join("\n");
    assert!(
        notes.contains("continuing from its 1048576 bytes"),
        "{notes}"
    );
    assert!(!first.partial(&d).exists());
    assert!(std::fs::read(first.path(&d)).unwrap() == blob);
}
