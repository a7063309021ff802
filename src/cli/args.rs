//! Every flag of the `airlock` command line, in one place: each flag owns
//! its help text, so `--help`, and later completions and the man page, come
//! from these definitions.
//!
//! Not for rules between flags beyond what clap states (`requires`,
//! `conflicts_with`); those live in `airlock::ops`. Turning flags into
//! library values (platforms, registry options) is here because it is
//! still parsing.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use airlock::model::{Platform, Reference};
use airlock::registry::RegistryOptions;
use airlock::{Error, Result};

use super::size::{parse_media_size, parse_size};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "Carry container images across an air gap"
)]
pub struct Cli {
    /// Log what airlock does on standard error: -v info (retries), -vv
    /// debug. RUST_LOG, when set, adds env_logger directives on top.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// `-j N`: at least one worker.
fn jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of workers")),
    }
}

/// Smaller chunks do not save memory worth having, and each costs a
/// request: 100 bytes would be 10 000 PATCHes per MiB.
const MIN_CHUNK: u64 = 1 << 20;

/// `--chunk-size`: a binary size of at least 1 MiB.
fn chunk_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < MIN_CHUNK {
        return Err(format!("{s:?} is less than the smallest chunk, 1M"));
    }
    Ok(n)
}

/// `--catalog HOST[:PORT]`: the distribution API lists a whole registry,
/// never a namespace, so a path after the host is refused rather than
/// glued into a wrong URL.
fn catalog_host(s: &str) -> Result<String, String> {
    if let Some((_, rest)) = s.split_once("://") {
        return Err(format!(
            "{s:?}: give the registry as HOST[:PORT], without a scheme (e.g. {})",
            rest.split('/').next().unwrap_or(rest)
        ));
    }
    if let Some((host, path)) = s.split_once('/') {
        return Err(format!(
            "{s:?}: a registry's catalog lists every repository of {host}; it cannot be \
             limited to {path:?}. Pass --catalog {host}, or --all-tags {host}/REPO for \
             each repository under {path}"
        ));
    }
    if s.is_empty() {
        return Err("the registry is empty".into());
    }
    Ok(s.to_string())
}

/// `--all-tags REGISTRY/REPO`: a valid repository name, checked before
/// anything is opened.
fn repository(s: &str) -> Result<String, String> {
    match Reference::parse(s) {
        Ok(_) => Ok(s.to_string()),
        Err(Error::InvalidReference { reason, .. }) => {
            Err(format!("{s:?} is not a repository name: {reason}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

// Parsed once per run; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Create an ed25519 signing key (NAME) and its public key (NAME.pub).
    Keygen(KeygenArgs),
    /// Pack images into one signed bundle.
    Pack(PackArgs),
    /// Check a bundle's signature and every blob, offline.
    Verify(VerifyArgs),
    /// Verify a bundle, then push its images into a registry; a re-run
    /// continues where the last one stopped.
    Import(ImportArgs),
    /// Rebuild a bundle's damaged or missing volumes from its parity, on
    /// disk, then check the result.
    Repair(RepairArgs),
    /// Show what a bundle holds (does not check the signature).
    Inspect(InspectArgs),
    /// Copy images out of a bundle into an OCI layout or a docker-archive.
    Export(ExportArgs),
    /// Copy images from any source to any target: registry to registry
    /// (each blob streamed once, checked on the way), OCI layout, archive
    /// or bundle; a re-run continues, and an image already there is left.
    Copy(CopyArgs),
}

// The structs below carry no doc comments of their own: the command's help
// text is its variant's doc comment above.

#[derive(Args)]
pub struct KeygenArgs {
    /// Path of the private key; the public key goes to NAME.pub.
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    pub output: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct PackArgs {
    /// oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:REF].
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Read more sources from a file, one per line (# comments allowed).
    #[arg(short = 'f', long = "file", value_name = "LIST")]
    pub list: Option<PathBuf>,
    /// The bundle to write. It appears only once it is complete.
    #[arg(short = 'o', long = "output", value_name = "BUNDLE")]
    pub output: PathBuf,
    /// Sign with this private key (from `airlock keygen`).
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Every tag of this repository (REGISTRY/REPO); repeatable.
    #[arg(long = "all-tags", value_name = "REPO", value_parser = repository)]
    pub all_tags: Vec<String>,
    /// Every repository and tag of this registry, HOST[:PORT] (a
    /// whole-registry backup); repeatable.
    #[arg(long = "catalog", value_name = "REGISTRY", value_parser = catalog_host)]
    pub catalogs: Vec<String>,
    /// Leave signatures, SBOMs and attestations behind.
    #[arg(long)]
    pub no_referrers: bool,
    /// Cache of downloaded blobs [default: $XDG_CACHE_HOME/airlock].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Parallel downloads, and threads for hashing and compression
    /// [default: 8 downloads, all cores].
    #[arg(short = 'j', long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    /// zstd level, 1 (fastest) to 19. Data that does not compress
    /// (gzip or zstd layers) is stored as it is; from level 10 on only
    /// data that barely shrinks at all.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Cut the bundle into volumes BUNDLE.001, BUNDLE.002, … of at most
    /// SIZE, in decimal units as media are sold: 4G (FAT32), 4.7G (DVD),
    /// 25G (BD-R); 4GiB for binary.
    #[arg(long, value_name = "SIZE", value_parser = parse_media_size)]
    pub split: Option<u64>,
    /// Add Reed-Solomon parity of PCT percent of the bundle
    /// (BUNDLE.parity, or parity volumes with --split): it repairs that
    /// much damage anywhere, or a lost volume if PCT exceeds its share.
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub parity: Option<u32>,
    /// Replace an existing bundle of this name, with its volumes and
    /// parity (they go once the new bundle is complete).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A bundle file, its first volume or the directory of its volumes;
    /// - reads a stream from standard input.
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Report damage that parity could repair, and fail, instead of
    /// repairing it in memory.
    #[arg(long)]
    pub no_repair: bool,
    /// Worker threads for hashing [default: all cores].
    #[arg(short = 'j', long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct ImportArgs {
    pub bundle: PathBuf,
    /// REGISTRY[/PREFIX]: where the images go.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Put every repository under this path (added to any path in --to).
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// Rewrite repositories: SRC (a repository or path prefix, with or
    /// without its registry) becomes DST; first match wins; repeatable.
    #[arg(long = "map", value_name = "SRC=DST")]
    pub maps: Vec<String>,
    /// Keep the source registry's host as the first path component
    /// (`--to reg/mirror` puts docker.io/library/nginx at
    /// reg/mirror/docker.io/library/nginx) [default: dropped].
    #[arg(long)]
    pub keep_registry: bool,
    /// Show where each image would go, how much would be sent, and what
    /// the registry has already; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Journal directory [default: $XDG_STATE_HOME/airlock].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Blobs larger than 8M (or than this, if smaller) go up in PATCH
    /// chunks of this size (at least 1M), streamed from the bundle (e.g.
    /// 32M).
    #[arg(long, default_value = "32M", value_name = "SIZE", value_parser = chunk_size)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Parallel uploads [default: 4; registries, not networks, are
    /// usually the bottleneck].
    #[arg(short = 'j', long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct RepairArgs {
    /// A bundle file, any of its volumes, or their directory.
    pub bundle: PathBuf,
    /// The signer's public key: the repaired bundle must carry its
    /// signature before anything is written [default: every digest only].
    #[arg(long = "pub", value_name = "KEY")]
    pub public_key: Option<PathBuf>,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct InspectArgs {
    pub bundle: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    pub bundle: PathBuf,
    /// oci:DIR or docker-archive:FILE.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// Images to export, by name [default: all].
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct PlatformArgs {
    /// Keep only os/arch[/variant]; repeat for several [default: all].
    /// Compared as containerd normalises them: linux/arm64 is
    /// linux/arm64/v8 and linux/aarch64; linux/amd64 is linux/x86_64.
    #[arg(long = "platform", value_name = "PLATFORM")]
    pub platforms: Vec<String>,
}

impl PlatformArgs {
    pub fn parse(&self) -> Result<Vec<Platform>> {
        self.platforms.iter().map(|p| Platform::parse(p)).collect()
    }
}

/// How to reach registries. Host lists take `host` or `host:port`.
#[derive(Args)]
pub struct RegistryArgs {
    /// Log in as this user (with --password-stdin) to the one registry the
    /// command targets: import's --to registry, or the registry all of
    /// pack's sources share (pack refuses it for sources on several
    /// registries; use `docker login` for each). Every other registry gets
    /// docker's config.json and credential helpers, or nothing; a URL off a
    /// registry's own origin (an upload Location, a redirect) gets no
    /// credentials at all.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Trust this CA certificate (PEM) for every registry, beside the
    /// system's and certs.d's; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Look for HOST:PORT/ca.crt and client.cert/client.key here instead of
    /// /etc/docker/certs.d and /etc/containers/certs.d; repeatable.
    #[arg(long = "certs-dir", value_name = "DIR")]
    pub certs_dirs: Vec<PathBuf>,
    /// Do not verify TLS certificates of these hosts; repeatable.
    #[arg(long = "insecure", value_name = "HOST")]
    pub insecure: Vec<String>,
    /// Speak plain HTTP to these hosts; repeatable.
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Attempts per request on connection errors, 429 and 5xx.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub retries: u32,
}

impl RegistryArgs {
    /// The options for `airlock::registry`; with `--password-stdin`, reads
    /// one line of standard input as the password.
    pub fn options(self, jobs: Option<usize>) -> Result<RegistryOptions> {
        let mut opts = RegistryOptions::default();
        if self.password_stdin {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| Error::io("read password from", "standard input", e))?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                // Sent, an empty password reads as "wrong password" later.
                return Err(Error::Usage(format!(
                    "--password-stdin read an empty password for {}; pipe it in, e.g. \
                     `printf %s \"$TOKEN\" | airlock … --password-stdin`",
                    self.username.as_deref().unwrap_or("the user")
                )));
            }
            opts.password = Some(password.to_string());
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
pub struct TrustArgs {
    /// The signer's public key.
    #[arg(
        long = "pub",
        value_name = "KEY",
        required_unless_present = "allow_unsigned"
    )]
    pub public_key: Option<PathBuf>,
    /// Accept the bundle without checking who signed it.
    #[arg(long, conflicts_with = "public_key")]
    pub allow_unsigned: bool,
}

#[derive(Args)]
pub struct OutputArgs {
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CopyArgs {
    /// SOURCE… TARGET. Sources: docker://REF (or a bare reference),
    /// oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF], or
    /// one bundle:FILE. Target: docker://REGISTRY[/PREFIX], oci:DIR,
    /// docker-archive:FILE or bundle:FILE (as `pack -o FILE`).
    #[arg(value_name = "SOURCE… TARGET", required = true)]
    pub args: Vec<String>,
    /// Read more sources from a file, one per line (# comments allowed).
    #[arg(short = 'f', long = "file", value_name = "LIST")]
    pub list: Option<PathBuf>,
    /// Every tag of this repository (REGISTRY/REPO); repeatable. Tags the
    /// target holds at the same digest are left as they are.
    #[arg(long = "all-tags", value_name = "REPO", value_parser = repository)]
    pub all_tags: Vec<String>,
    /// Every repository and tag of this registry, HOST[:PORT]; repeatable.
    #[arg(long = "catalog", value_name = "REGISTRY", value_parser = catalog_host)]
    pub catalogs: Vec<String>,
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Leave signatures, SBOMs and attestations behind.
    #[arg(long)]
    pub no_referrers: bool,
    /// For a bundle:FILE source: the signer's public key.
    #[arg(long = "pub", value_name = "KEY")]
    pub public_key: Option<PathBuf>,
    /// For a bundle:FILE source: accept it without checking who signed it.
    #[arg(long, conflicts_with = "public_key")]
    pub allow_unsigned: bool,
    /// For a bundle:FILE target: sign with this private key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
    /// For a bundle:FILE target: replace an existing bundle of this name,
    /// with its volumes and parity.
    #[arg(long)]
    pub force: bool,
    /// For a docker:// target: put every repository under this path.
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// For a docker:// target: SRC (a repository or path prefix, with or
    /// without its registry) becomes DST; first match wins; repeatable.
    #[arg(long = "map", value_name = "SRC=DST")]
    pub maps: Vec<String>,
    /// For a docker:// target: keep the source registry's host as the
    /// first path component [default: dropped].
    #[arg(long)]
    pub keep_registry: bool,
    /// For a docker:// target: list what would move and what is there
    /// already; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Journal directory [default: $XDG_STATE_HOME/airlock].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Blobs larger than 8M (or than this, if smaller) go up in PATCH
    /// chunks of this size (at least 1M).
    #[arg(long, default_value = "32M", value_name = "SIZE", value_parser = chunk_size)]
    pub chunk_size: u64,
    /// Cache of downloaded blobs, for a bundle:FILE target only (a copy
    /// into a registry or directory streams) [default: $XDG_CACHE_HOME/airlock].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// --username/--password-stdin log in to the target registry (and to
    /// the sources when all are on it); other source registries are read
    /// with docker's config.json and credential helpers (`docker login`).
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Blobs copied at once [default: 8].
    #[arg(short = 'j', long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub output_args: OutputArgs,
}
