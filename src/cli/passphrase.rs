//! Passphrases of encrypted private keys: the first line of
//! `--passphrase-file`, or typed on the terminal (`/dev/tty`, not standard
//! input, which may carry a bundle) with echo off.
//!
//! Not for keys themselves (`airlock::bundle::sign`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use airlock::{Error, Result};

/// Reads the passphrase for `key`: from `file`, or asked on the terminal
/// (twice when `confirm`, for a new key).
pub fn read(key: &Path, file: Option<&Path>, confirm: bool) -> Result<String> {
    match file {
        Some(f) => from_file(f),
        None => from_terminal(key, confirm),
    }
}

fn from_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read passphrase", path, e))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(Error::Usage(format!(
            "the passphrase file {} is empty; put the passphrase on its first line",
            path.display()
        )));
    }
    Ok(line.to_string())
}

fn from_terminal(key: &Path, confirm: bool) -> Result<String> {
    let no_tty = |e| {
        Error::Usage(format!(
            "cannot ask for the passphrase of {} ({e}): there is no terminal; pass --passphrase-file FILE",
            key.display()
        ))
    };
    let tty = File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    let first = prompt(&tty, &format!("Passphrase for {}: ", key.display()))?;
    if first.is_empty() {
        return Err(Error::Usage(format!(
            "an empty passphrase for {}; type one, or leave out --encrypt",
            key.display()
        )));
    }
    if confirm && prompt(&tty, "Again, to confirm: ")? != first {
        return Err(Error::Usage(format!(
            "the two passphrases for {} differ; nothing was written",
            key.display()
        )));
    }
    Ok(first)
}

/// One line from the terminal with echo off, echo restored after.
fn prompt(tty: &File, text: &str) -> Result<String> {
    let fail = |e| Error::io("read passphrase from", "the terminal", e);
    (&*tty).write_all(text.as_bytes()).map_err(fail)?;
    let fd = tty.as_raw_fd();
    // SAFETY: tcgetattr/tcsetattr on a descriptor `tty` owns, into a
    // termios struct of ours.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        libc::tcsetattr(fd, libc::TCSANOW, &t);
        saved
    };
    let mut line = String::new();
    let read = BufReader::new(tty).read_line(&mut line);
    // SAFETY: as above; restores what was read.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &saved);
    }
    read.map_err(fail)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
