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
    CopyArgs, ExportArgs, ImportArgs, InspectArgs, KeygenArgs, PackArgs, RepairArgs, VerifyArgs,
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
        public_key,
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
    if let Some(list) = list {
        sources.extend(ops::read_source_list(&list)?);
    }
    let key = key.as_deref().map(sign::load_private).transpose()?;
    let key_id = key.as_ref().map(|k| sign::key_id(&k.verifying_key()));
    let target = TargetSpec::parse(&target)?;
    // Standard output may carry the target, standard input the source.
    match &target {
        TargetSpec::Bundle(p) => ops::stdio::check_pack_output(p, out.json)?,
        TargetSpec::DockerArchive(p) => {
            ops::stdio::check_export_output(&ExportTarget::DockerArchive(p.clone()), out.json)?
        }
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
                public_key,
                allow_unsigned,
            };
            if trust.public_key.is_none() && !trust.allow_unsigned {
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
            render::report(out, &copied, |_| render::packed(summary, key_id.as_deref()));
            Ok(())
        }
        Copied::Files { images, to } => {
            render::report(out, &copied, |_| render::exported(*images, to));
            Ok(())
        }
    }
}
