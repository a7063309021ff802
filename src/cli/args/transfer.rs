//! The flags of the commands that make, check and move bundles: `pack`,
//! `verify`, `import`, `repair`, `inspect`, `export` and `copy`. The
//! commands around them (keys, cache, login, serve, inventory, diff, man
//! pages) are in `args.rs`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::flags::{
    catalog_host, chunk_size, jobs, repository, OutputArgs, PlatformArgs, RegistryArgs, TrustArgs,
};
use crate::cli::size::parse_media_size;

#[derive(Args)]
pub struct PackArgs {
    /// Images to pack: a registry reference (docker://REF, or a bare
    /// [REGISTRY/]REPO[:TAG][@DIGEST]), oci:DIR[:REF],
    /// oci-archive:FILE[:REF] or docker-archive:FILE[:REF].
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Read more sources from FILE (- for standard input): one per line
    /// (# comments allowed), or an image set in YAML, by a .yaml/.yml name
    /// or an `apiVersion:` first line (docs/image-sets.md).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// The bundle to write. It appears only once it is complete.
    #[arg(short = 'o', long = "output", value_name = "BUNDLE")]
    pub output: PathBuf,
    /// Sign with this private key (from `airlock keygen`); an encrypted
    /// key asks for its passphrase on the terminal.
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
    /// Read the passphrase of an encrypted --key from the first line of
    /// FILE instead of the terminal.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub passphrase_file: Option<PathBuf>,
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
    /// Pack a delta against BASE: a bundle sent before (file, volume or
    /// volume set) or an inventory JSON file; blobs BASE holds are listed,
    /// not carried. Repeatable.
    #[arg(long = "against", value_name = "BASE")]
    pub against: Vec<PathBuf>,
    /// For --against bundles: the signer's public key; repeatable.
    #[arg(long = "pub", value_name = "KEY", requires = "against")]
    pub base_keys: Vec<PathBuf>,
    /// For --against bundles: accept them without checking who signed them.
    #[arg(long, conflicts_with = "base_keys", requires = "against")]
    pub allow_unsigned: bool,
    /// Replace an existing bundle of this name, with its volumes and
    /// parity (they go once the new bundle is complete).
    #[arg(long)]
    pub force: bool,
    /// List the images that would be packed (tags and catalogs listed,
    /// every manifest fetched and checked); download and write nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    /// For a delta bundle: a base (bundle or inventory) that supplies the
    /// blobs it expects; checks that the bases hold every one. Repeatable.
    #[arg(long = "with", value_name = "BASE")]
    pub with: Vec<PathBuf>,
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
    /// A bundle file, its first volume or the directory of its volumes;
    /// - reads a stream from standard input.
    #[arg(value_name = "BUNDLE")]
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
    /// Refuse to move a tag the registry has to another digest: that image
    /// fails, naming both digests, and the others go on [default: move it,
    /// and say so].
    #[arg(long)]
    pub no_overwrite: bool,
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
    /// signature before anything is written; repeatable, any one may have
    /// signed [default: every digest only].
    #[arg(long = "pub", value_name = "KEY")]
    pub public_keys: Vec<PathBuf>,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A bundle file, its first volume or the directory of its volumes.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Print JSON instead of a table (see docs/json.md); on failure, a
    /// JSON object with the error.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A bundle file, its first volume or the directory of its volumes.
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// oci:DIR, oci-archive:FILE or docker-archive:FILE (an archive FILE
    /// of - goes to standard output).
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// Images to export, by their name in the bundle (as `airlock inspect`
    /// lists them) [default: all].
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// For a delta bundle: a base bundle that carries the blobs the delta
    /// expects (checked with the same --pub). Repeatable.
    #[arg(long = "with", value_name = "BASE")]
    pub with: Vec<PathBuf>,
    /// Replace an existing docker-archive file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub platform: PlatformArgs,
    #[command(flatten)]
    pub output_args: OutputArgs,
}

#[derive(Args)]
pub struct CopyArgs {
    /// SOURCE… TARGET. Sources: docker://REF (or a bare reference),
    /// oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF], or
    /// one bundle:FILE. Target: docker://REGISTRY[/PREFIX], oci:DIR,
    /// docker-archive:FILE or bundle:FILE (as `pack -o FILE`).
    #[arg(value_name = "SOURCE… TARGET", required = true)]
    pub args: Vec<String>,
    /// Read more sources from FILE (- for standard input): one per line
    /// (# comments allowed), or an image set in YAML, by a .yaml/.yml name
    /// or an `apiVersion:` first line (docs/image-sets.md).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
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
    /// For a bundle:FILE source: the signer's public key; repeatable (any
    /// of them may have signed it).
    #[arg(long = "pub", value_name = "KEY")]
    pub public_keys: Vec<PathBuf>,
    /// For a bundle:FILE source: accept it without checking who signed it.
    #[arg(long, conflicts_with = "public_keys")]
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
