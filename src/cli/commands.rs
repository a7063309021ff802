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

use clap::CommandFactory;

use super::args::{
    CacheArgs, CacheLsArgs, CachePruneArgs, Cli, CompletionArgs, CopyArgs, ExportArgs, ImportArgs,
    InspectArgs, KeyIdArgs, KeygenArgs, LoginArgs, LogoutArgs, ManArgs, PackArgs, RepairArgs,
    ServeArgs, VerifyArgs,
};
use super::open;
use super::passphrase;
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
    let passphrase = match args.encrypt {
        true => Some(zeroize::Zeroizing::new(passphrase::read(
            &args.output,
            args.passphrase_file.as_deref(),
            true,
        )?)),
        false => None,
    };
    let files = ops::keygen::keygen(
        &args.output,
        args.force,
        passphrase.as_deref().map(|p| p.as_str()),
    )?;
    render::keygen(&files);
    Ok(())
}

/// `key id FILE`: the id of a public or private key file.
pub fn key_id(args: KeyIdArgs) -> Result<()> {
    let file = &args.file;
    let id = sign::key_file_id(file, &mut || {
        passphrase::read(file, args.passphrase_file.as_deref(), false)
    })?;
    render::out_line(format_args!("{id}"));
    Ok(())
}

fn cache_dir(args: &CacheArgs) -> std::path::PathBuf {
    args.cache.clone().unwrap_or_else(ops::cache::default_dir)
}

pub fn cache_du(args: CacheArgs) -> Result<()> {
    let usage = ops::cache::du(&cache_dir(&args))?;
    if args.json {
        render::json(&usage);
    } else {
        render::cache_usage(&usage);
    }
    Ok(())
}

pub fn cache_ls(args: CacheLsArgs) -> Result<()> {
    let dir = cache_dir(&args.cache);
    let listed = ops::cache::ls(&dir)?;
    if args.cache.json {
        // An object, as every --json output is: a list cannot carry "version".
        render::json(&serde_json::json!({"cache": dir, "entries": listed}));
    } else {
        render::cache_listing(&listed);
    }
    Ok(())
}

pub fn cache_prune(args: CachePruneArgs) -> Result<()> {
    let pruned = ops::cache::prune(&cache_dir(&args.cache), args.older_than, args.max_size)?;
    if args.cache.json {
        render::json(&pruned);
    } else {
        render::cache_pruned(&pruned);
    }
    Ok(())
}

pub fn pack(args: PackArgs) -> Result<()> {
    let PackArgs {
        mut sources,
        list,
        output,
        key,
        passphrase_file,
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
        dry_run,
        output_args,
        against,
        base_keys,
        allow_unsigned,
    } = args;
    set_jobs(jobs)?;
    ops::stdio::check_pack_output(&output, output_args.json)?;
    let stdin_too: Vec<&str> = [registry.password_stdin.then_some("--password-stdin")]
        .into_iter()
        .flatten()
        .collect();
    ops::imageset::check_stdin(list.as_deref(), &stdin_too)?;
    let set = match list.as_deref().map(ops::imageset::read).transpose()? {
        Some(ops::imageset::SourceFile::List(more)) => {
            sources.extend(more);
            None
        }
        Some(ops::imageset::SourceFile::Set(set)) => Some(set),
        None => None,
    };
    let key = match &key {
        Some(path) => Some(sign::load_private_with(path, &mut || {
            passphrase::read(path, passphrase_file.as_deref(), false)
        })?),
        None => None,
    };
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
        set,
        output,
        platforms: platform.parse()?,
        options,
        registry: registry.options(jobs)?,
        cache,
        referrers: !no_referrers,
        force,
        dry_run,
        quiet: output_args.quiet,
        against: ops::delta::Against {
            bases: against,
            trust: ops::delta::BaseTrust {
                keys: open::public_keys(&base_keys)?,
                allow_unsigned,
            },
        },
    })?;
    let show = if dry_run {
        render::pack_planned
    } else {
        render::packed
    };
    render::report(&output_args, &summary, show);
    Ok(())
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    set_jobs(args.jobs)?;
    let out = &args.output_args;
    let quiet = out.quiet || out.json;
    let mut report = if is_stdin(&args.bundle) {
        let key = open::stream_key(&args.trust)?;
        let mut report = bundle::verify_stream(std::io::stdin().lock(), key.as_ref())?;
        report.signed_by = key.as_ref().and_then(|k| k.signer());
        report
    } else {
        let options = OpenOptions {
            check: true,
            repair: !args.no_repair,
            degraded: false,
        };
        let bundle = open::trusted_with(&args.bundle, &args.trust, options, quiet)?;
        let total = bundle.manifest().blobs.iter().map(|b| b.size).sum();
        let progress = Progress::new(total, "verify", quiet);
        let report = bundle.verify(&progress)?.into_report();
        progress.finish();
        report
    };
    if !args.with.is_empty() {
        let bases = ops::delta::Bases::open(&args.with, &open::base_trust(&args.trust)?, true)?;
        let name = match is_stdin(&args.bundle) {
            true => "standard input".to_string(),
            false => args.bundle.display().to_string(),
        };
        let supplied = ops::delta::check_supplied(&report, &name, &bases)?;
        if let Some(d) = report.delta.as_mut() {
            d.supplied_by = supplied;
        }
    }
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
        no_overwrite: args.no_overwrite,
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
    let failed = match report.failed() {
        0 => None,
        failed => Some(Error::ImagesFailed {
            failed,
            retry_helps: report.retry_helps,
        }),
    };
    match &failed {
        // One object: what went in, and the error.
        Some(e) if out.json => render::json_with_error(&report, e),
        _ => render::report(out, &report, render::imported),
    }
    if out.quiet || out.json {
        // The text report did not show them: failures are never hidden.
        render::import_failures(&report);
    }
    failed.map_or(Ok(()), Err)
}

pub fn repair(args: RepairArgs) -> Result<()> {
    let keys = open::public_keys(&args.public_keys)?;
    let report = ops::repair::repair(&args.bundle, keys.as_ref())?;
    render::report(&args.output_args, &report, render::repaired);
    Ok(())
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let report = if is_stdin(&args.bundle) {
        ops::inspect::inspect_stream(std::io::stdin().lock())?
    } else {
        ops::inspect(&open::untrusted(&args.bundle)?)?
    };
    if args.json {
        render::json(&report);
    } else {
        let shown = match is_stdin(&args.bundle) {
            true => Path::new("standard input"),
            false => args.bundle.as_path(),
        };
        render::inspection(shown, &report);
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<()> {
    let target = ExportTarget::parse(&args.to)?;
    ops::stdio::check_export_output(&target, args.output_args.json, args.force)?;
    let bundle = open::trusted(&args.bundle, &args.trust)?;
    // Nothing leaves a bundle that `verify` would refuse.
    let bundle = bundle.verify(&Progress::hidden())?;
    let out = &args.output_args;
    let bases = match args.with.is_empty() {
        true => None,
        false => Some(ops::delta::Bases::open(
            &args.with,
            &open::base_trust(&args.trust)?,
            true,
        )?),
    };
    let n = ops::export_with(
        &bundle,
        bases.as_ref(),
        &target,
        &args.images,
        &args.platform.parse()?,
        out.quiet,
    )?;
    let summary = render::Exported {
        images: n,
        to: args.to.clone(),
    };
    render::report(out, &summary, render::exported);
    Ok(())
}

pub fn completion(args: CompletionArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "airlock", &mut script);
    render::raw(&script);
    Ok(())
}

/// `airlock man [COMMAND]`, or every page into `--dir`.
pub fn man(args: ManArgs) -> Result<()> {
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    if let Some(dir) = args.dir {
        let mut written = 0;
        write_pages(&top, &dir, &mut written)?;
        render::man_pages_written(written, &dir);
        return Ok(());
    }
    let page = match args.command {
        None => top,
        Some(name) => top.find_subcommand(&name).cloned().ok_or_else(|| {
            let names: Vec<&str> = top.get_subcommands().map(|c| c.get_name()).collect();
            Error::Usage(format!(
                "no command {name:?} has a man page; the commands are: {}",
                names.join(", ")
            ))
        })?,
    };
    render::raw(&man_page(page).1);
    Ok(())
}

/// A command's page in roff, and its file name (`airlock-pack.1`).
///
/// clap_mangen's sections, but the `--help` examples go into an EXAMPLES
/// section as they are (no filling, `\-` for each `-`), not into its
/// justified EXTRA, so that a command copied from the page runs.
fn man_page(mut cmd: clap::Command) -> (String, Vec<u8>) {
    let examples = cmd.get_after_help().map(|h| h.to_string());
    cmd = cmd.after_help(None::<&str>).after_long_help(None::<&str>);
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("airlock {}", env!("CARGO_PKG_VERSION")))
        .manual("airlock manual");
    let mut roff = Vec::new();
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd.get_subcommands().any(|c| !c.is_hide_set());
    // Writes into memory: none of these can fail.
    let _ = man.render_title(&mut roff);
    let _ = man.render_name_section(&mut roff);
    let _ = man.render_synopsis_section(&mut roff);
    let _ = man.render_description_section(&mut roff);
    if has_args {
        let _ = man.render_options_section(&mut roff);
    }
    if has_subs {
        let _ = man.render_subcommands_section(&mut roff);
    }
    if let Some(text) = examples {
        roff.extend_from_slice(b".SH EXAMPLES\n.nf\n");
        for line in text.lines().skip_while(|l| l.ends_with(':')) {
            let line = line.trim().replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with(['.', '\'']) {
                roff.extend_from_slice(b"\\&");
            }
            roff.extend_from_slice(line.as_bytes());
            roff.push(b'\n');
        }
        roff.extend_from_slice(b".fi\n");
    }
    if cmd.get_version().is_some() {
        let _ = man.render_version_section(&mut roff);
    }
    (man.get_filename(), roff)
}

/// `cmd`'s page and those of its subcommands, at every depth.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut usize) -> Result<()> {
    let (name, roff) = man_page(cmd.clone());
    let path = dir.join(name);
    std::fs::write(&path, roff).map_err(|e| Error::io("write man page", &path, e))?;
    log::debug!("wrote {}", path.display());
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
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

pub fn copy(args: CopyArgs) -> Result<()> {
    use airlock::ops::copy::{self as copy_op, Copied, CopyRequest};
    use airlock::ops::transport::TargetSpec;
    let CopyArgs {
        args: mut sources,
        list,
        all_tags,
        catalogs,
        platform,
        no_referrers,
        public_keys,
        allow_unsigned,
        key,
        force,
        prefix,
        maps,
        keep_registry,
        dry_run,
        state,
        chunk_size,
        cache,
        registry,
        jobs,
        output_args,
    } = args;
    let out = &output_args;
    let target = sources.pop().ok_or_else(|| {
        Error::Usage("name the sources and then the target: airlock copy SOURCE… TARGET".into())
    })?;
    let stdin_too: Vec<&str> = [
        registry.password_stdin.then_some("--password-stdin"),
        sources
            .iter()
            .any(|s| s == "bundle:-")
            .then_some("bundle:-"),
    ]
    .into_iter()
    .flatten()
    .collect();
    ops::imageset::check_stdin(list.as_deref(), &stdin_too)?;
    let set = match list.as_deref().map(ops::imageset::read).transpose()? {
        Some(ops::imageset::SourceFile::List(more)) => {
            sources.extend(more);
            None
        }
        Some(ops::imageset::SourceFile::Set(set)) => Some(set),
        None => None,
    };
    let key = key.as_deref().map(sign::load_private).transpose()?;
    let target = TargetSpec::parse(&target)?;
    // Standard output may carry the target, standard input the source.
    match &target {
        TargetSpec::Bundle(p) => ops::stdio::check_pack_output(p, out.json)?,
        TargetSpec::DockerArchive(p) => ops::stdio::check_export_output(
            &ExportTarget::DockerArchive(p.clone()),
            out.json,
            force,
        )?,
        _ => {}
    }
    if sources.iter().any(|s| s == "bundle:-") {
        ops::stdio::check_import_input(Path::new("-"), registry.password_stdin)?;
    }
    let created = created_now();
    let request = CopyRequest {
        sources,
        all_tags,
        catalogs,
        set,
        target,
        prefix,
        maps,
        keep_registry,
        platforms: platform.parse()?,
        referrers: !no_referrers,
        dry_run,
        state,
        chunk_size,
        registry: registry.options(jobs)?,
        cache,
        pack: PackOptions {
            level: 3,
            key,
            created,
            split: None,
            parity: None,
        },
        created: created.max(0) as u64,
        force,
        quiet: out.quiet || out.json,
    };
    let copied = match copy_op::bundle_source(&request)? {
        Some(path) => {
            let trust = super::args::TrustArgs {
                public_keys,
                allow_unsigned,
            };
            if trust.public_keys.is_empty() && !trust.allow_unsigned {
                return Err(Error::Usage(format!(
                    "bundle:{} needs --pub KEY (the signer's public key), or --allow-unsigned",
                    path.display()
                )));
            }
            if is_stdin(&path) {
                let key = open::stream_key(&trust)?;
                let stdin = std::io::stdin().lock();
                copy_op::copy_bundle_stream(stdin, key.as_ref(), request)?
            } else {
                copy_op::copy_bundle(open::trusted(&path, &trust)?, request)?
            }
        }
        None => copy_op::copy(request)?,
    };
    match &copied {
        Copied::Registry(report) => {
            render::report(out, &copied, |_| render::copied(report));
            if out.quiet || out.json {
                render::import_failures(report);
            }
            match report.failed() {
                0 => Ok(()),
                failed => Err(Error::ImagesFailed {
                    failed,
                    retry_helps: report.retry_helps,
                }),
            }
        }
        Copied::Bundle(summary) => {
            render::report(out, &copied, |_| render::packed(summary));
            Ok(())
        }
        Copied::Files { images, to } => {
            let exported = render::Exported {
                images: *images,
                to: to.clone(),
            };
            render::report(out, &copied, |_| render::exported(&exported));
            Ok(())
        }
    }
}

/// `inventory docker://REGISTRY[/PREFIX]` or `inventory BUNDLE…`.
pub fn inventory(args: super::args::InventoryArgs) -> Result<()> {
    let super::args::InventoryArgs {
        places,
        output,
        force,
        public_keys,
        allow_unsigned,
        registry,
        jobs,
        quiet,
    } = args;
    ops::inventory::check_output(&output, force)?;
    // skopeo and crane users write a registry bare; a bundle is a file.
    if let Some(bare) = places.iter().find(|p| {
        !p.starts_with("docker://")
            && !Path::new(p.as_str()).exists()
            && p.contains(['.', ':'])
            && !p.contains(".airlock")
    }) {
        return Err(Error::Usage(format!(
            "{bare} is neither a file nor a docker:// place: to list a registry, write docker://{bare}"
        )));
    }
    let created = bundle::rfc3339(created_now());
    let registries: Vec<&String> = places
        .iter()
        .filter(|p| p.starts_with("docker://"))
        .collect();
    let inventory = match (registries.as_slice(), places.len()) {
        ([one], 1) => {
            if !public_keys.is_empty() || allow_unsigned {
                return Err(Error::Usage(
                    "--pub and --allow-unsigned are for bundles; a registry is listed as it is"
                        .into(),
                ));
            }
            ops::inventory::of_registry(ops::inventory::RegistryRequest {
                place: ops::inventory::RegistryPlace::parse(one)?,
                registry: registry.options(jobs)?,
                created,
            })?
        }
        ([], _) => {
            let trust = bundle_trust(public_keys, allow_unsigned, "inventory of bundles")?;
            inventory_of_bundles(&places, &trust, created, quiet)?
        }
        _ => {
            return Err(Error::Usage(
                "inventory takes one docker://REGISTRY[/PREFIX], or bundles; not both, nor two registries: run it once for each".into(),
            ))
        }
    };
    if output == Path::new("-") {
        render::raw(&inventory.to_bytes());
    } else {
        ops::inventory::write(&inventory, &output)?;
    }
    if !quiet {
        render::inventoried(&inventory, &output);
    }
    Ok(())
}

/// `--pub` or `--allow-unsigned`, required once a bundle is to be read.
fn bundle_trust(
    public_keys: Vec<std::path::PathBuf>,
    allow_unsigned: bool,
    what: &str,
) -> Result<super::args::TrustArgs> {
    if public_keys.is_empty() && !allow_unsigned {
        return Err(Error::Usage(format!(
            "{what} needs --pub KEY (the signer's public key), or --allow-unsigned"
        )));
    }
    Ok(super::args::TrustArgs {
        public_keys,
        allow_unsigned,
    })
}

/// Opens and trusts each bundle, then lists what they carried. The
/// signature is checked over the manifest; the volumes are not hashed
/// (the signed manifest is all an inventory reads), unless that quick
/// open fails, when a full check names the damage.
fn inventory_of_bundles(
    paths: &[String],
    trust: &super::args::TrustArgs,
    created: String,
    quiet: bool,
) -> Result<airlock::model::inventory::Inventory> {
    let quick = OpenOptions {
        check: false,
        repair: true,
        degraded: false,
    };
    let opened = paths
        .iter()
        .map(|p| {
            let path = Path::new(p);
            match open::trusted_with(path, trust, quick, quiet) {
                Err(Error::BadBundle { .. }) => {
                    open::trusted_with(path, trust, OpenOptions::FULL, quiet)
                }
                other => other,
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let listed: Vec<ops::inventory::TrustedBundle> = paths
        .iter()
        .zip(&opened)
        .map(|(file, b)| ops::inventory::TrustedBundle {
            file: file.clone(),
            id: b.id().clone(),
            manifest: b.manifest(),
        })
        .collect();
    ops::inventory::of_bundles(&listed, created)
}

/// `diff A B`: each side an inventory file or a bundle.
pub fn diff(args: super::args::DiffArgs) -> Result<()> {
    use ops::diff::{Input, Side};
    let inputs = [Input::classify(&args.a)?, Input::classify(&args.b)?];
    let needs_trust = inputs.iter().any(|i| matches!(i, Input::Bundle(_)));
    let trust = match needs_trust {
        true => Some(bundle_trust(
            args.public_keys.clone(),
            args.allow_unsigned,
            "diff of a bundle",
        )?),
        false => None,
    };
    let mut sides = Vec::new();
    for (input, path) in inputs.into_iter().zip([&args.a, &args.b]) {
        let inventory = match input {
            Input::Inventory(inv) => *inv,
            Input::Bundle(p) => {
                let trust = trust.as_ref().expect("asked for above");
                let created = bundle::rfc3339(created_now());
                inventory_of_bundles(&[p.display().to_string()], trust, created, args.json)?
            }
        };
        sides.push(Side {
            name: path.display().to_string(),
            inventory,
        });
    }
    let diff = ops::diff::diff(&sides[0], &sides[1]);
    if args.json {
        render::json(&diff);
    } else {
        render::diffed(&diff);
    }
    Ok(())
}

/// `serve BUNDLE…`: the bundles as one read-only registry.
pub fn serve(args: ServeArgs) -> Result<()> {
    let keys = open::stream_key(&args.trust)?;
    let mut bundles = Vec::new();
    for path in &args.bundles {
        let bundle = open::trusted_with(path, &args.trust, ops::serve::OPEN, false)?;
        bundles.push((path.clone(), bundle));
    }
    let request = ops::serve::ServeRequest {
        bundles,
        keys,
        naming: airlock::serve::Naming {
            prefix: args.prefix,
            maps: args.maps,
            keep_registry: args.keep_registry,
        },
        listen: args.listen,
        tls: args.tls_cert.zip(args.tls_key),
        htpasswd: args.htpasswd,
        max_connections: args.max_connections,
    };
    ops::serve::serve(request, render::serving)
}
