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
    CacheArgs, CacheLsArgs, CachePruneArgs, CopyArgs, ExportArgs, ImportArgs, InspectArgs,
    KeyIdArgs, KeygenArgs, PackArgs, RepairArgs, ServeArgs, VerifyArgs,
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

pub(super) fn created_now() -> i64 {
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

pub fn copy(args: CopyArgs) -> Result<()> {
    use airlock::ops::copy::{self as copy_op, CopyRequest};
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
    let set = copy_list(list.as_deref(), &mut sources, registry.password_stdin)?;
    let key = key.as_deref().map(sign::load_private).transpose()?;
    let target = TargetSpec::parse(&target)?;
    check_copy_stdio(&target, &sources, out.json, force, registry.password_stdin)?;
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
    render_copied(out, &copied)
}

/// `copy -f LIST`: a plain list adds to the sources, an image set is
/// returned; standard input is read by at most one of them.
fn copy_list(
    list: Option<&Path>,
    sources: &mut Vec<String>,
    password_stdin: bool,
) -> Result<Option<ops::imageset::ImageSet>> {
    let stdin_too: Vec<&str> = [
        password_stdin.then_some("--password-stdin"),
        sources
            .iter()
            .any(|s| s == "bundle:-")
            .then_some("bundle:-"),
    ]
    .into_iter()
    .flatten()
    .collect();
    ops::imageset::check_stdin(list, &stdin_too)?;
    Ok(match list.map(ops::imageset::read).transpose()? {
        Some(ops::imageset::SourceFile::List(more)) => {
            sources.extend(more);
            None
        }
        Some(ops::imageset::SourceFile::Set(set)) => Some(set),
        None => None,
    })
}

/// Standard output may carry the target, standard input the source.
fn check_copy_stdio(
    target: &airlock::ops::transport::TargetSpec,
    sources: &[String],
    json: bool,
    force: bool,
    password_stdin: bool,
) -> Result<()> {
    use airlock::ops::transport::TargetSpec;
    match target {
        TargetSpec::Bundle(p) => ops::stdio::check_pack_output(p, json)?,
        TargetSpec::DockerArchive(p) => {
            ops::stdio::check_export_output(&ExportTarget::DockerArchive(p.clone()), json, force)?
        }
        _ => {}
    }
    if sources.iter().any(|s| s == "bundle:-") {
        ops::stdio::check_import_input(Path::new("-"), password_stdin)?;
    }
    Ok(())
}

/// What `copy` did, by the kind of target; images that failed fail it.
fn render_copied(out: &super::args::OutputArgs, copied: &airlock::ops::copy::Copied) -> Result<()> {
    use airlock::ops::copy::Copied;
    match copied {
        Copied::Registry(report) => {
            render::report(out, copied, |_| render::copied(report));
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
            render::report(out, copied, |_| render::packed(summary));
            Ok(())
        }
        Copied::Files { images, to } => {
            let exported = render::Exported {
                images: *images,
                to: to.clone(),
            };
            render::report(out, copied, |_| render::exported(&exported));
            Ok(())
        }
    }
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
