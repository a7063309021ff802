//! `airlock login` and `airlock logout`: the prompt (with echo off for the
//! password) and the CLI's side of the credentials file.
//!
//! Not for where credentials are kept or how they are checked
//! (`airlock::ops::login`).

use airlock::ops;
use airlock::{Error, Result};

use super::args::{LoginArgs, LogoutArgs};
use super::render;

/// `airlock login REGISTRY`: the user from `--username` or the terminal,
/// the password from standard input (`--password-stdin`) or the terminal
/// without echo; checked with the registry, then stored.
pub fn login(args: LoginArgs) -> Result<()> {
    use std::io::IsTerminal;
    let asks = |what: &str| {
        Error::Usage(format!(
            "airlock login {} needs {what}, and standard input is not a terminal to ask on: \
             pass --username USER and pipe the password in with --password-stdin",
            args.registry
        ))
    };
    let username = match &args.username {
        Some(u) => u.clone(),
        None if std::io::stdin().is_terminal() && !args.password_stdin => {
            prompt("Username", false)?
        }
        None => return Err(asks("a user (--username)")),
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Error::io("read password from", "standard input", e))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        prompt("Password", true)?
    } else {
        return Err(asks("a password"));
    };
    if username.is_empty() || password.is_empty() {
        return Err(Error::Usage(format!(
            "airlock login {}: the user and the password must not be empty",
            args.registry
        )));
    }
    let file = ops::login::login(&args.options(), &args.registry, &username, &password)?;
    render::out_line(format_args!(
        "Login succeeded: credentials for {username} at {} stored in {}",
        args.registry,
        file.display()
    ));
    Ok(())
}

/// `airlock logout REGISTRY` or `--all`.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let out = ops::login::logout(args.authfile.as_deref(), args.registry.as_deref())?;
    match &args.registry {
        Some(r) => render::out_line(format_args!(
            "Removed the credentials for {r} from {}",
            out.file.display()
        )),
        None => render::out_line(format_args!(
            "Removed the credentials for {} registr{} from {}",
            out.removed.len(),
            if out.removed.len() == 1 { "y" } else { "ies" },
            out.file.display()
        )),
    }
    Ok(())
}

/// One line asked on the terminal (standard error, standard input); with
/// `hide`, echo is off while it is typed, and restored however the read
/// ends.
fn prompt(label: &str, hide: bool) -> Result<String> {
    use std::io::Write as _;
    // Echo goes off before the prompt shows: nothing typed after it is seen.
    let saved = if hide { echo_off() } else { None };
    eprint!("{label}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the settings read from the same descriptor.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        eprintln!();
    }
    read.map_err(|e| Error::io("read from", "the terminal", e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Turns echo off on standard input; the settings to restore, or `None`
/// if it is not a terminal.
fn echo_off() -> Option<libc::termios> {
    // SAFETY: tcgetattr writes a termios into the zeroed value given it;
    // both calls only read or set terminal flags of descriptor 0.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return None;
        }
        let mut quiet = t;
        quiet.c_lflag &= !libc::ECHO;
        (libc::tcsetattr(0, libc::TCSANOW, &quiet) == 0).then_some(t)
    }
}
