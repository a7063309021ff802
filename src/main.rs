//! The `airlock` command line: flags, output, and the one place errors are
//! rendered (message, then a hint on what to do next).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use airlock::atomic::AtomicFile;
use airlock::bundle::{self, sign, Bundle, OpenOptions, Opened, PackOptions, Trusted};
use airlock::model::Platform;
use airlock::ops::{self, ExportTarget};
use airlock::progress::Progress;
use airlock::registry::RegistryOptions;
use airlock::registry::Target;
use airlock::{Error, Result};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Carry container images across an air gap"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Create an ed25519 signing key (NAME) and its public key (NAME.pub).
    Keygen {
        /// Path of the private key; the public key goes to NAME.pub.
        #[arg(short = 'o', long = "output", value_name = "NAME")]
        output: PathBuf,
        /// Overwrite existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Pack images into one signed bundle.
    Pack {
        /// oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF].
        #[arg(value_name = "SOURCE")]
        sources: Vec<String>,
        /// Read more sources from a file, one per line (# comments allowed).
        #[arg(short = 'f', long = "file", value_name = "LIST")]
        list: Option<PathBuf>,
        /// The bundle to write. It appears only once it is complete.
        #[arg(short = 'o', long = "output", value_name = "BUNDLE")]
        output: PathBuf,
        /// Sign with this private key (from `airlock keygen`).
        #[arg(long, value_name = "KEY")]
        key: Option<PathBuf>,
        #[command(flatten)]
        platform: PlatformArgs,
        /// Every tag of this repository (REGISTRY/REPO); repeatable.
        #[arg(long = "all-tags", value_name = "REPO")]
        all_tags: Vec<String>,
        /// Every repository and tag of this registry (a whole-registry
        /// backup); repeatable.
        #[arg(long = "catalog", value_name = "REGISTRY")]
        catalogs: Vec<String>,
        /// Leave signatures, SBOMs and attestations behind.
        #[arg(long)]
        no_referrers: bool,
        /// Cache of downloaded blobs [default: $XDG_CACHE_HOME/airlock].
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Parallel downloads, and threads for hashing and compression
        /// [default: 8 downloads, all cores].
        #[arg(short = 'j', long, value_name = "N")]
        jobs: Option<usize>,
        /// zstd level, 1 (fastest) to 19. Data that does not compress
        /// (gzip or zstd layers) is stored as it is; from level 10 on only
        /// data that barely shrinks at all.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// Cut the bundle into volumes BUNDLE.001, BUNDLE.002, … of at most
        /// SIZE, in decimal units as media are sold: 4G (FAT32), 4.7G (DVD),
        /// 25G (BD-R); 4GiB for binary.
        #[arg(long, value_name = "SIZE", value_parser = parse_media_size)]
        split: Option<u64>,
        /// Add Reed-Solomon parity of PCT percent of the bundle
        /// (BUNDLE.parity, or parity volumes with --split): it repairs that
        /// much damage anywhere, or a lost volume if PCT exceeds its share.
        #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..=100))]
        parity: Option<u32>,
        #[command(flatten)]
        output_args: OutputArgs,
    },
    /// Check a bundle's signature and every blob, offline.
    Verify {
        /// A bundle file, its first volume or the directory of its volumes;
        /// - reads a stream from standard input.
        bundle: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Report damage that parity could repair, and fail, instead of
        /// repairing it in memory.
        #[arg(long)]
        no_repair: bool,
        /// Worker threads for hashing [default: all cores].
        #[arg(short = 'j', long, value_name = "N")]
        jobs: Option<usize>,
        #[command(flatten)]
        output_args: OutputArgs,
    },
    /// Verify a bundle, then push its images into a registry; a re-run
    /// continues where the last one stopped.
    Import {
        bundle: PathBuf,
        /// REGISTRY[/PREFIX]: where the images go.
        #[arg(long, value_name = "TARGET")]
        to: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Put every repository under this path (added to any path in --to).
        #[arg(long, value_name = "PATH")]
        prefix: Option<String>,
        /// Rewrite repositories: SRC (a repository or path prefix, with or
        /// without its registry) becomes DST; first match wins; repeatable.
        #[arg(long = "map", value_name = "SRC=DST")]
        maps: Vec<String>,
        /// Keep the source registry's host as the first path component
        /// (`--to reg/mirror` puts docker.io/library/nginx at
        /// reg/mirror/docker.io/library/nginx) [default: dropped].
        #[arg(long)]
        keep_registry: bool,
        /// Show where each image would go, how much would be sent, and what
        /// the registry has already; push nothing.
        #[arg(long)]
        dry_run: bool,
        /// Journal directory [default: $XDG_STATE_HOME/airlock].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Blobs larger than 8M (or than this, if smaller) go up in PATCH
        /// chunks of this size, streamed from the bundle (e.g. 32M).
        #[arg(long, default_value = "32M", value_name = "SIZE", value_parser = parse_size)]
        chunk_size: u64,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Parallel uploads [default: 4; registries, not networks, are
        /// usually the bottleneck].
        #[arg(short = 'j', long, value_name = "N")]
        jobs: Option<usize>,
        #[command(flatten)]
        output_args: OutputArgs,
    },
    /// Rebuild a bundle's damaged or missing volumes from its parity, on
    /// disk, then check the result.
    Repair {
        /// A bundle file, any of its volumes, or their directory.
        bundle: PathBuf,
        #[command(flatten)]
        output_args: OutputArgs,
    },
    /// Show what a bundle holds (does not check the signature).
    Inspect {
        bundle: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Copy images out of a bundle into an OCI layout or a docker-archive.
    Export {
        bundle: PathBuf,
        /// oci:DIR or docker-archive:FILE.
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// Images to export, by name [default: all].
        #[arg(value_name = "IMAGE")]
        images: Vec<String>,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        platform: PlatformArgs,
        #[command(flatten)]
        output_args: OutputArgs,
    },
}

#[derive(Args)]
struct PlatformArgs {
    /// Keep only os/arch[/variant]; repeat for several [default: all].
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,
}

impl PlatformArgs {
    fn parse(&self) -> Result<Vec<Platform>> {
        self.platforms.iter().map(|p| Platform::parse(p)).collect()
    }
}

/// How to reach registries. Host lists take `host` or `host:port`.
#[derive(Args)]
struct RegistryArgs {
    /// Log in as this user (with --password-stdin); otherwise docker's
    /// config.json and credential helpers are used.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Trust this CA certificate (PEM) for every registry, beside the
    /// system's and certs.d's; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
    /// Look for HOST:PORT/ca.crt and client.cert/client.key here instead of
    /// /etc/docker/certs.d and /etc/containers/certs.d; repeatable.
    #[arg(long = "certs-dir", value_name = "DIR")]
    certs_dirs: Vec<PathBuf>,
    /// Do not verify TLS certificates of these hosts; repeatable.
    #[arg(long = "insecure", value_name = "HOST")]
    insecure: Vec<String>,
    /// Speak plain HTTP to these hosts; repeatable.
    #[arg(long = "plain-http", value_name = "HOST")]
    plain_http: Vec<String>,
    /// Attempts per request on connection errors, 429 and 5xx.
    #[arg(long, default_value_t = 6, value_name = "N")]
    retries: u32,
}

impl RegistryArgs {
    fn options(self, jobs: Option<usize>) -> Result<RegistryOptions> {
        let mut opts = RegistryOptions::default();
        if self.password_stdin {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| Error::io("read password from", "standard input", e))?;
            opts.password = Some(password.trim_end_matches(['\n', '\r']).to_string());
            opts.username = self.username;
        }
        opts.ca_certs = self.ca_certs;
        if !self.certs_dirs.is_empty() {
            opts.certs_dirs = self.certs_dirs;
        }
        opts.insecure = self.insecure;
        opts.plain_http = self.plain_http;
        opts.attempts = self.retries.max(1);
        opts.jobs = jobs.unwrap_or(8);
        Ok(opts)
    }
}

#[derive(Args)]
struct TrustArgs {
    /// The signer's public key.
    #[arg(
        long = "pub",
        value_name = "KEY",
        required_unless_present = "allow_unsigned"
    )]
    public_key: Option<PathBuf>,
    /// Accept the bundle without checking who signed it.
    #[arg(long, conflicts_with = "public_key")]
    allow_unsigned: bool,
}

#[derive(Args)]
struct OutputArgs {
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            render(&e);
            ExitCode::FAILURE
        }
    }
}

/// The one error renderer: each problem, then what to do about it.
fn render(e: &Error) {
    let mut err = std::io::stderr().lock();
    match e {
        Error::Many(list) => {
            let _ = writeln!(err, "airlock: {} problems:", list.len());
            for (i, item) in list.iter().enumerate() {
                let _ = writeln!(err, "  {}. {item}", i + 1);
                if let Some(h) = item.hint() {
                    let _ = writeln!(err, "     hint: {h}");
                }
            }
        }
        e => {
            let _ = writeln!(err, "airlock: error: {e}");
            if let Some(h) = e.hint() {
                let _ = writeln!(err, "  hint: {h}");
            }
        }
    }
}

/// `8M`, `4.7G`, `512K`, `100` (bytes); binary units.
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 8M or 4.7G"))?;
    if v <= 0.0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok((v * mult as f64) as u64)
}

/// Media sizes: decimal units as media are labelled (4.7G is a DVD), with
/// KiB/MiB/GiB/TiB for binary ones.
fn parse_media_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']);
    let binary = t.ends_with(['i', 'I']);
    let t = t.trim_end_matches(['i', 'I']);
    let base: u64 = if binary { 1024 } else { 1000 };
    let (num, power) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1),
        Some('M' | 'm') => (&t[..t.len() - 1], 2),
        Some('G' | 'g') => (&t[..t.len() - 1], 3),
        Some('T' | 't') => (&t[..t.len() - 1], 4),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4G, 4.7G or 700M"))?;
    if v <= 0.0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok((v * base.pow(power) as f64) as u64)
}

fn set_jobs(jobs: Option<usize>) -> Result<()> {
    if let Some(n) = jobs {
        if n == 0 {
            return Err(Error::Usage("--jobs must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Usage(format!("cannot start {n} worker threads: {e}")))?;
    }
    Ok(())
}

fn trusted(path: &Path, trust: &TrustArgs) -> Result<(Bundle<Trusted>, Option<String>)> {
    trusted_with(path, trust, OpenOptions::FULL, false)
}

/// Opens (checking volumes and parity, repairing if allowed) and checks the
/// signature. Notices about volumes go to stderr unless `quiet`.
fn trusted_with(
    path: &Path,
    trust: &TrustArgs,
    options: OpenOptions,
    quiet: bool,
) -> Result<(Bundle<Trusted>, Option<String>)> {
    let bundle = Bundle::<Opened>::open_with(path, options)?;
    if !quiet {
        for note in bundle.file().notices() {
            eprintln!("note: {note}");
        }
    }
    match &trust.public_key {
        Some(key_path) => {
            let key = sign::load_public(key_path)?;
            Ok((bundle.check_signature(&key)?, Some(sign::key_id(&key))))
        }
        None => Ok((bundle.without_signature_check()?, None)),
    }
}

fn created_now() -> i64 {
    // SOURCE_DATE_EPOCH makes bundles reproducible, as in reproducible builds.
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Keygen { output, force } => {
            let public = PathBuf::from(format!("{}.pub", output.display()));
            for p in [&output, &public] {
                if p.exists() && !force {
                    return Err(Error::Usage(format!(
                        "{} exists; pass --force to overwrite it",
                        p.display()
                    )));
                }
            }
            let key = sign::generate()?;
            let mut private = AtomicFile::create(&output)?;
            {
                use std::os::unix::fs::PermissionsExt;
                private
                    .file()
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::io("set permissions of", &output, e))?;
            }
            private
                .write_all(sign::private_pem(&key).as_bytes())
                .map_err(|e| Error::io("write", &output, e))?;
            private.commit()?;
            AtomicFile::write(&public, sign::public_pem(&key.verifying_key()).as_bytes())?;
            println!("{}", sign::key_id(&key.verifying_key()));
            eprintln!(
                "wrote private key {} (keep it secret) and public key {}",
                output.display(),
                public.display()
            );
            Ok(())
        }
        Command::Pack {
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
            output_args,
        } => {
            set_jobs(jobs)?;
            if output == Path::new("-") && output_args.json {
                return Err(Error::Usage(
                    "--json prints to standard output, which -o - already uses for the bundle"
                        .into(),
                ));
            }
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
                output: output.clone(),
                platforms: platform.parse()?,
                options,
                registry: registry.options(jobs)?,
                cache,
                referrers: !no_referrers,
                quiet: output_args.quiet,
            })?;
            if output_args.json {
                print_json(&summary);
            } else if !output_args.quiet {
                eprintln!(
                    "packed {} image(s), {} blob(s), {} into {}{}",
                    summary.images,
                    summary.blobs,
                    human(summary.bytes),
                    output.display(),
                    key_id
                        .map(|k| format!(", signed by {k}"))
                        .unwrap_or_else(|| ", unsigned".into())
                );
            }
            Ok(())
        }
        Command::Verify {
            bundle: path,
            trust,
            no_repair,
            jobs,
            output_args,
        } => {
            set_jobs(jobs)?;
            let (mut report, key_id) = if path == Path::new("-") {
                let key = trust
                    .public_key
                    .as_deref()
                    .map(sign::load_public)
                    .transpose()?;
                let report = bundle::verify_stream(std::io::stdin().lock(), key.as_ref())?;
                (report, key.as_ref().map(sign::key_id))
            } else {
                let options = OpenOptions {
                    check: true,
                    repair: !no_repair,
                };
                let quiet = output_args.quiet || output_args.json;
                let (bundle, key_id) = trusted_with(&path, &trust, options, quiet)?;
                let total = bundle.manifest().blobs.iter().map(|b| b.size).sum();
                let progress =
                    Progress::new(total, "verify", output_args.quiet || output_args.json);
                let report = bundle.verify(&progress)?.into_report();
                progress.finish();
                (report, key_id)
            };
            report.signed_by = key_id.clone();
            if output_args.json {
                print_json(&report);
            } else if !output_args.quiet {
                println!(
                    "OK: {} image(s), {} blob(s), {} checked; {}",
                    report.images,
                    report.blobs,
                    human(report.bytes),
                    match key_id {
                        Some(k) => format!("signed by {k}"),
                        None => "signature NOT checked (--allow-unsigned)".into(),
                    }
                );
            }
            Ok(())
        }
        Command::Import {
            bundle: path,
            to,
            trust,
            prefix,
            maps,
            keep_registry,
            dry_run,
            state,
            chunk_size,
            registry,
            jobs,
            output_args,
        } => {
            let request = airlock::ops::import::ImportRequest {
                target: Target::parse(&to, prefix.as_deref(), &maps, keep_registry)?,
                dry_run,
                state,
                chunk_size,
                registry: registry.options(Some(jobs.unwrap_or(4)))?,
                quiet: output_args.quiet || output_args.json,
            };
            let report = if path == Path::new("-") {
                if request.registry.password.is_some() {
                    return Err(Error::Usage(
                        "--password-stdin cannot be used with `import -`: standard input carries the bundle; use docker's config.json".into(),
                    ));
                }
                let key = trust
                    .public_key
                    .as_deref()
                    .map(sign::load_public)
                    .transpose()?;
                airlock::ops::import::import_stream(std::io::stdin().lock(), key.as_ref(), request)?
            } else {
                let (bundle, _) = trusted(&path, &trust)?;
                let bundle = bundle.verify(&Progress::hidden())?;
                airlock::ops::import::import(&bundle, request)?
            };
            if output_args.json {
                print_json(&report);
            } else if !output_args.quiet {
                for i in &report.images {
                    let why = i
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    println!("{:10} {} -> {}{why}", i.status, i.source, i.target);
                }
                println!(
                    "{}: {} blob(s) {}, {} mounted, {} already there; {} of {} {}",
                    if report.dry_run { "dry run" } else { "import" },
                    report.blobs.pushed,
                    if report.dry_run { "to push" } else { "pushed" },
                    report.blobs.mounted,
                    report.blobs.existed,
                    human(report.bytes_pushed),
                    human(report.bytes_total),
                    if report.dry_run {
                        "would be sent"
                    } else {
                        "sent"
                    },
                );
            }
            match report.failed() {
                0 => Ok(()),
                n => Err(Error::Usage(format!(
                    "{n} image(s) failed (listed above); run the same command again to retry them"
                ))),
            }
        }
        Command::Repair {
            bundle: path,
            output_args,
        } => {
            let report = ops::repair::repair(&path)?;
            if output_args.json {
                print_json(&report);
            } else if !output_args.quiet {
                if report.rewritten.is_empty() && report.moved.is_empty() {
                    eprintln!("nothing to repair: every volume and parity file checks out");
                }
                for line in &report.moved {
                    eprintln!("moved {line}");
                }
                for line in &report.rewritten {
                    eprintln!("rewrote {line}");
                }
                if !report.rewritten.is_empty() {
                    eprintln!(
                        "repaired: {} shard(s) rebuilt; the bundle checks out",
                        report.shards_rebuilt
                    );
                }
            }
            Ok(())
        }
        Command::Inspect { bundle, json } => {
            // Only labels and structure: hashing every volume is verify's
            // job. If that much fails, a full check names the damage (and
            // parity may repair it).
            let quick = OpenOptions {
                check: false,
                repair: true,
            };
            let b = match Bundle::<Opened>::open_with(&bundle, quick) {
                Err(Error::BadBundle { .. }) => Bundle::<Opened>::open(&bundle)?,
                other => other?,
            };
            for note in b.file().notices() {
                eprintln!("note: {note}");
            }
            let report = ops::inspect(&b)?;
            if json {
                print_json(&report);
                return Ok(());
            }
            println!("bundle:   {}", bundle.display());
            println!(
                "format:   v{} ({}), created {}",
                report.format_version, report.tool, report.created
            );
            println!(
                "signer:   {} (claimed; run `airlock verify --pub KEY` to check)",
                if report.signed_by.is_empty() {
                    "unsigned".to_string()
                } else {
                    report.signed_by.join(", ")
                }
            );
            println!(
                "content:  {} image(s), {} blob(s), {} stored, {} shared between images",
                report.images.len(),
                report.blobs,
                human(report.total_bytes),
                human(report.shared_bytes)
            );
            println!();
            for i in &report.images {
                println!("{}", i.name.as_deref().unwrap_or("(untagged)"));
                println!("  digest:    {}", i.digest);
                if let Some(s) = &i.source_digest {
                    println!("  source:    {} (digest there {s})", i.source);
                } else {
                    println!("  source:    {}", i.source);
                }
                println!(
                    "  platforms: {}",
                    if i.platforms.is_empty() {
                        "-".into()
                    } else {
                        i.platforms.join(", ")
                    }
                );
                println!(
                    "  size:      {} ({} shared)",
                    human(i.size),
                    human(i.shared_bytes)
                );
            }
            Ok(())
        }
        Command::Export {
            bundle: path,
            to,
            images,
            trust,
            platform,
            output_args,
        } => {
            let target = ExportTarget::parse(&to)?;
            let (bundle, _) = trusted(&path, &trust)?;
            let n = ops::export(
                &bundle,
                &target,
                &images,
                &platform.parse()?,
                output_args.quiet,
            )?;
            if output_args.json {
                print_json(&serde_json::json!({"images": n, "to": to}));
            } else if !output_args.quiet {
                eprintln!("exported {n} image(s) to {to}");
            }
            Ok(())
        }
    }
}
