//! One short function per command: turn the parsed flags into a library
//! request, call `airlock::ops` (or `airlock::bundle`), hand the result to
//! `render`.
//!
//! Not for rules between flags (those are in `airlock::ops`, e.g.
//! `ops::stdio`), nor for formatting output (`render`), nor for opening
//! bundles (`open`).

use std::path::Path;

use airlock::bundle::{self, sign, OpenOptions, PackOptions};
use airlock::ops::import::ImportRequest;
use airlock::ops::{self, ExportTarget};
use airlock::progress::Progress;
use airlock::registry::Target;
use airlock::{Error, Result};

use super::args::{
    ExportArgs, ImportArgs, InspectArgs, KeygenArgs, LoginArgs, LogoutArgs, PackArgs, RepairArgs,
    VerifyArgs,
};
use super::open;
use super::render;

/// `-` as a bundle path: the bundle is a stream on standard input.
fn is_stdin(path: &Path) -> bool {
    path == Path::new("-")
}

/// `--jobs N`: the size of the global worker pool (hashing, compression).
fn set_jobs(jobs: Option<usize>) -> Result<()> {
    if let Some(n) = jobs {
        if n == 0 {
            return Err(Error::Usage("--jobs must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Failed(format!("cannot start {n} worker threads: {e}")))?;
    }
    Ok(())
}

fn created_now() -> i64 {
    // SOURCE_DATE_EPOCH makes bundles reproducible, as in reproducible builds.
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    render::keygen(&ops::keygen::keygen(&args.output, args.force)?);
    Ok(())
}

pub fn pack(args: PackArgs) -> Result<()> {
    let PackArgs {
        mut sources,
        list,
        output,
        key,
        platform,
        all_tags,
        catalogs,
        no_referrers,
        cache,
        registry,
        jobs,
        level,
        split,
        parity,
        force,
        output_args,
    } = args;
    set_jobs(jobs)?;
    ops::stdio::check_pack_output(&output, output_args.json)?;
    if let Some(list) = list {
        sources.extend(ops::read_source_list(&list)?);
    }
    let key = key.as_deref().map(sign::load_private).transpose()?;
    let key_id = key.as_ref().map(|k| sign::key_id(&k.verifying_key()));
    let options = PackOptions {
        level,
        key,
        created: created_now(),
        split,
        parity,
    };
    let summary = ops::pack(ops::PackRequest {
        sources,
        all_tags,
        catalogs,
        output,
        platforms: platform.parse()?,
        options,
        registry: registry.options(jobs)?,
        cache,
        referrers: !no_referrers,
        force,
        quiet: output_args.quiet,
    })?;
    render::report(&output_args, &summary, |s| {
        render::packed(s, key_id.as_deref())
    });
    Ok(())
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    set_jobs(args.jobs)?;
    let out = &args.output_args;
    let quiet = out.quiet || out.json;
    let report = if is_stdin(&args.bundle) {
        let key = open::stream_key(&args.trust)?;
        let mut report = bundle::verify_stream(std::io::stdin().lock(), key.as_ref())?;
        report.signed_by = key.as_ref().map(sign::key_id);
        report
    } else {
        let options = OpenOptions {
            check: true,
            repair: !args.no_repair,
        };
        let bundle = open::trusted_with(&args.bundle, &args.trust, options, quiet)?;
        let total = bundle.manifest().blobs.iter().map(|b| b.size).sum();
        let progress = Progress::new(total, "verify", quiet);
        let report = bundle.verify(&progress)?.into_report();
        progress.finish();
        report
    };
    render::report(out, &report, render::verified);
    Ok(())
}

pub fn import(args: ImportArgs) -> Result<()> {
    let out = &args.output_args;
    // Before the password is read: on `import -` standard input is the bundle.
    ops::stdio::check_import_input(&args.bundle, args.registry.password_stdin)?;
    let request = ImportRequest {
        target: Target::parse(
            &args.to,
            args.prefix.as_deref(),
            &args.maps,
            args.keep_registry,
        )?,
        dry_run: args.dry_run,
        state: args.state,
        chunk_size: args.chunk_size,
        registry: args.registry.options(Some(args.jobs.unwrap_or(4)))?,
        quiet: out.quiet || out.json,
    };
    let report = if is_stdin(&args.bundle) {
        let key = open::stream_key(&args.trust)?;
        ops::import::import_stream(std::io::stdin().lock(), key.as_ref(), request)?
    } else {
        let bundle = open::trusted(&args.bundle, &args.trust)?;
        ops::import::import(bundle, request)?
    };
    render::report(out, &report, render::imported);
    if out.quiet || out.json {
        // The text report did not show them: failures are never hidden.
        render::import_failures(&report);
    }
    match report.failed() {
        0 => Ok(()),
        failed => Err(Error::ImagesFailed {
            failed,
            retry_helps: report.retry_helps,
        }),
    }
}

pub fn repair(args: RepairArgs) -> Result<()> {
    let key = args
        .public_key
        .as_deref()
        .map(sign::load_public)
        .transpose()?;
    let report = ops::repair::repair(&args.bundle, key.as_ref())?;
    render::report(&args.output_args, &report, render::repaired);
    Ok(())
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let bundle = open::untrusted(&args.bundle)?;
    let report = ops::inspect(&bundle)?;
    if args.json {
        render::json(&report);
    } else {
        render::inspection(&args.bundle, &report);
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<()> {
    let target = ExportTarget::parse(&args.to)?;
    ops::stdio::check_export_output(&target, args.output_args.json)?;
    let bundle = open::trusted(&args.bundle, &args.trust)?;
    // Nothing leaves a bundle that `verify` would refuse.
    let bundle = bundle.verify(&Progress::hidden())?;
    let out = &args.output_args;
    let n = ops::export(
        &bundle,
        &target,
        &args.images,
        &args.platform.parse()?,
        out.quiet,
    )?;
    let summary = serde_json::json!({"images": n, "to": args.to});
    render::report(out, &summary, |_| render::exported(n, &args.to));
    Ok(())
}

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
