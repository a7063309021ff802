//! Every command of the `airlock` command line and its flags (those of the
//! commands that make, check and move bundles in `args/transfer.rs`; the
//! flag groups several commands share, and the parsers of flag values, in
//! `flags.rs`): each flag owns its help text, so `--help`, the shell
//! completions (`airlock completion`) and the man pages (`airlock man`) all
//! come from these definitions.
//!
//! Not for rules between flags beyond what clap states (`requires`,
//! `conflicts_with`); those live in `airlock::ops`. Turning flags into
//! library values (platforms, registry options) is here because it is
//! still parsing.

use std::path::PathBuf;

use clap::{ArgMatches, Args, Parser, Subcommand};

use airlock::registry::RegistryOptions;

use super::flags::{cache_size, jobs, registry_host};
pub use super::flags::{OutputArgs, RegistryArgs, TrustArgs};

/// The "Examples:" section that ends each command's `--help` and man page.
macro_rules! examples {
    ($($line:literal),+ $(,)?) => {
        concat!("Examples:", $("\n  ", $line),+)
    };
}

mod transfer;
pub use transfer::{
    CopyArgs, ExportArgs, ImportArgs, InspectArgs, PackArgs, RepairArgs, VerifyArgs,
};

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

// Parsed once per run; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Create an ed25519 signing key (NAME) and its public key (NAME.pub).
    #[command(after_help = examples!(
        "airlock keygen -o site.key",
        "airlock keygen -o /secure/site-a.key --force",
    ))]
    Keygen(KeygenArgs),
    /// Pack images into one signed bundle.
    #[command(after_help = examples!(
        "airlock pack -o app.airlock --key site.key reg.example.com/app:1.0 oci:./build",
        "airlock pack -o dvd.airlock --key site.key --catalog reg.example.com --split 4.7G --parity 10",
        "airlock pack -o base.airlock --key site.key --platform linux/amd64 -f images.yaml --json",
    ))]
    Pack(PackArgs),
    /// Check a bundle's signature and every blob, offline.
    #[command(after_help = examples!(
        "airlock verify --pub site.key.pub app.airlock",
        "airlock verify --pub site.key.pub /media/dvd/",
        "cat app.airlock | airlock verify --pub site.key.pub -",
    ))]
    Verify(VerifyArgs),
    /// Verify a bundle, then push its images into a registry; a re-run
    /// continues where the last one stopped.
    #[command(after_help = examples!(
        "airlock import --pub site.key.pub --to reg.internal:5000 app.airlock",
        "airlock import --pub site.key.pub --to reg.internal/mirror --dry-run app.airlock",
        "airlock import --pub site.key.pub --to reg.internal --map docker.io/library=base app.airlock",
    ))]
    Import(ImportArgs),
    /// Rebuild a bundle's damaged or missing volumes from its parity, on
    /// disk, then check the result.
    #[command(after_help = examples!(
        "airlock repair --pub site.key.pub /media/volumes/",
        "airlock repair --json app.airlock.001",
    ))]
    Repair(RepairArgs),
    /// Show what a bundle holds (does not check the signature).
    #[command(after_help = examples!(
        "airlock inspect app.airlock",
        "airlock inspect --json app.airlock | jq -r '.images[].name'",
    ))]
    Inspect(InspectArgs),
    /// Copy images out of a bundle into an OCI layout (directory or
    /// oci-archive) or a docker-archive.
    #[command(after_help = examples!(
        "airlock export --pub site.key.pub --to oci:./out app.airlock",
        "airlock export --pub site.key.pub --to docker-archive:- app.airlock | docker load",
        "airlock export --pub site.key.pub --to oci-archive:app.tar app.airlock reg.example.com/app:1.0",
    ))]
    Export(ExportArgs),
    /// Print a shell completion script, generated from these flags.
    #[command(after_help = examples!(
        "airlock completion bash > /etc/bash_completion.d/airlock",
        "airlock completion zsh > \"${fpath[1]}/_airlock\"",
        "airlock completion fish > ~/.config/fish/completions/airlock.fish",
    ))]
    Completion(CompletionArgs),
    /// Print a man page in roff: airlock's, or one command's.
    #[command(after_help = examples!(
        "airlock man pack | man -l -",
        "airlock man --dir /usr/local/share/man/man1",
    ))]
    Man(ManArgs),
    /// Show and prune pack's blob cache.
    #[command(subcommand)]
    #[command(after_help = examples!(
        "airlock cache du",
        "airlock cache prune --older-than 30d --max-size 50G",
    ))]
    Cache(CacheCommand),
    /// Work with signing keys.
    #[command(subcommand)]
    #[command(after_help = examples!(
        "airlock key id site.key.pub",
        "airlock key id site.key --passphrase-file pass.txt",
    ))]
    Key(KeyCommand),
    /// Log in to a registry: check the credentials with it, then store
    /// them in the containers auth file, as `skopeo login` does.
    #[command(after_help = examples!(
        "airlock login registry.example.com",
        "echo \"$TOKEN\" | airlock login -u robot --password-stdin registry.example.com:5000",
        "airlock login --authfile ./auth.json registry.example.com",
    ))]
    Login(LoginArgs),
    /// Remove a registry's credentials from the containers auth file.
    #[command(after_help = examples!(
        "airlock logout registry.example.com",
        "airlock logout --all",
    ))]
    Logout(LogoutArgs),
    /// Copy images from any source to any target: registry to registry
    /// (each blob streamed once, checked on the way), OCI layout, archive
    /// or bundle; a re-run continues, and an image already there is left.
    #[command(after_help = examples!(
        "airlock copy docker://registry.example.com/team/app:2.1 docker://mirror.local:5000/team",
        "airlock copy --all-tags registry.example.com/team/app docker://mirror.local:5000",
        "airlock copy --pub site.key.pub bundle:app.airlock docker://registry.local",
    ))]
    Copy(CopyArgs),
    /// Write what a registry (under a prefix) or the bundles already sent
    /// hold: each image with its digest and every blob with its size, as
    /// the JSON inventory `diff` and `pack --against` read
    /// (docs/inventory.md).
    #[command(after_help = examples!(
        "airlock inventory docker://registry.internal:5000/mirror -o held.json",
        "airlock inventory --pub site.key.pub week1.airlock week2.airlock -o sent.json",
        "airlock inventory --authfile auth.json docker://registry.internal -o - | jq '.images[].name'",
    ))]
    Inventory(InventoryArgs),
    /// Compare two bundles or inventories: images added, removed and moved,
    /// and the bytes a delta from A to B would carry. Exits 0 whatever
    /// the difference.
    #[command(after_help = examples!(
        "airlock diff --pub site.key.pub week1.airlock week2.airlock",
        "airlock diff held.json --pub site.key.pub next.airlock --json",
        "airlock diff old.json new.json --json | jq .delta_bytes",
    ))]
    Diff(DiffArgs),
    /// Serve bundles as a read-only registry (the OCI distribution API),
    /// straight from the files: no unpacking, no temporary space. Several
    /// bundles (a base and its deltas) are served as one.
    #[command(after_help = examples!(
        "airlock serve --pub site.key.pub app.airlock",
        "airlock serve --pub site.key.pub --listen 0.0.0.0:5000 base.airlock delta-1.airlock",
        "airlock serve --pub site.key.pub --tls-cert srv.crt --tls-key srv.key --htpasswd users app.airlock",
    ))]
    Serve(ServeArgs),
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// The cache's size, entry count and partial downloads.
    #[command(after_help = examples!(
        "airlock cache du",
        "airlock cache du --cache /var/cache/airlock --json",
    ))]
    Du(CacheArgs),
    /// Remove cached blobs, least recently used first; refused while a
    /// pack uses the cache.
    #[command(after_help = examples!(
        "airlock cache prune --older-than 30d",
        "airlock cache prune --max-size 50G",
        "airlock cache prune --cache /var/cache/airlock --older-than 12h --max-size 10G",
    ))]
    Prune(CachePruneArgs),
    /// List the cached blobs, least recently used first.
    #[command(after_help = examples!(
        "airlock cache ls",
        "airlock cache ls --json | jq '.entries | length'",
    ))]
    Ls(CacheLsArgs),
}

#[derive(Args)]
pub struct CacheArgs {
    /// The cache [default: $XDG_CACHE_HOME/airlock, as pack uses].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CachePruneArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Remove blobs not used for this long: 30m, 12h, 7d.
    #[arg(long, value_name = "DURATION", value_parser = airlock::ops::cache::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Then remove the least recently used blobs until the cache holds at
    /// most SIZE (as --split reads it: 10G, 500MiB).
    #[arg(long, value_name = "SIZE", value_parser = cache_size)]
    pub max_size: Option<u64>,
}

#[derive(Args)]
pub struct CacheLsArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print a key's id (from a public or a private key file), as keygen
    /// prints it and bundles name their signer.
    #[command(after_help = examples!(
        "airlock key id site.key.pub",
        "airlock key id site.key --passphrase-file pass.txt",
    ))]
    Id(KeyIdArgs),
}

#[derive(Args)]
pub struct KeyIdArgs {
    /// A public key (NAME.pub) or a private key (NAME, encrypted or not).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Read an encrypted key's passphrase from the first line of FILE
    /// instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
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
    /// Encrypt the private key with a passphrase (PKCS#8 PBES2: scrypt and
    /// AES-256-CBC, as `openssl pkey` reads it), typed twice on the
    /// terminal or read from --passphrase-file.
    #[arg(long)]
    pub encrypt: bool,
    /// Read the passphrase from the first line of FILE instead of the
    /// terminal.
    #[arg(long, value_name = "FILE", requires = "encrypt")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// The command whose page to print (e.g. pack) [default: airlock's own
    /// page].
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Option<String>,
    /// Write every page (airlock.1, airlock-pack.1, …) into this directory
    /// instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Whether the command line asked for `--json`, at any subcommand level:
/// then a failure is reported as JSON on stdout too. Read from the matches
/// rather than from each command's struct, so a new command with a `json`
/// flag is covered without a list to keep.
pub fn json_requested(matches: &ArgMatches) -> bool {
    matches!(matches.try_get_one::<bool>("json"), Ok(Some(true)))
        || matches
            .subcommand()
            .is_some_and(|(_, sub)| json_requested(sub))
}

/// Whether raw arguments that clap refused contain `--json` (before any
/// `--`): the refusal is then reported as JSON too.
pub fn json_in_raw_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

#[derive(Args)]
pub struct LoginArgs {
    /// The registry, HOST[:PORT].
    #[arg(value_name = "REGISTRY", value_parser = registry_host)]
    pub registry: String,
    /// The user [default: asked on the terminal].
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password (or token) from standard input [default: asked on
    /// the terminal, without echo].
    #[arg(long)]
    pub password_stdin: bool,
    /// Store the credentials in this file [default: $REGISTRY_AUTH_FILE,
    /// else $XDG_RUNTIME_DIR/containers/auth.json, else
    /// ~/.config/containers/auth.json].
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Trust this CA certificate (PEM); repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Look for HOST:PORT/ca.crt and client certificates here; repeatable.
    #[arg(long = "certs-dir", value_name = "DIR")]
    pub certs_dirs: Vec<PathBuf>,
    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Speak plain HTTP to the registry.
    #[arg(long)]
    pub plain_http: bool,
}

impl LoginArgs {
    /// The registry options the login check runs with (no credentials yet).
    pub fn options(&self) -> RegistryOptions {
        let me = |yes: bool| yes.then(|| self.registry.clone()).into_iter().collect();
        let defaults = RegistryOptions::default();
        RegistryOptions {
            ca_certs: self.ca_certs.clone(),
            certs_dirs: if self.certs_dirs.is_empty() {
                defaults.certs_dirs.clone()
            } else {
                self.certs_dirs.clone()
            },
            insecure: me(self.insecure),
            plain_http: me(self.plain_http),
            authfile: self.authfile.clone(),
            attempts: 2,
            jobs: 1,
            ..defaults
        }
    }
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The registry, HOST[:PORT].
    #[arg(
        value_name = "REGISTRY",
        value_parser = registry_host,
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub registry: Option<String>,
    /// Remove the credentials of every registry.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// The auth file to edit [default: as for login].
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Bundle files, first volumes or directories of volumes; a later
    /// bundle's tags win over an earlier one's (a delta over its base).
    #[arg(value_name = "BUNDLE", required = true)]
    pub bundles: Vec<PathBuf>,
    /// ADDR:PORT to listen on.
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR")]
    pub listen: String,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Put every repository under this path, as import does.
    #[arg(long, value_name = "PATH")]
    pub prefix: Option<String>,
    /// Rewrite repositories as import does: SRC (a repository or path
    /// prefix, with or without its registry) becomes DST; repeatable.
    #[arg(long = "map", value_name = "SRC=DST")]
    pub maps: Vec<String>,
    /// Keep the source registry's host as the first path component
    /// [default: dropped].
    #[arg(long)]
    pub keep_registry: bool,
    /// PEM certificate (chain) to serve HTTPS with; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require Basic auth against this file's bcrypt passwords (as
    /// `htpasswd -B` writes them).
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Connections served at once; more are answered 503.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
}

#[derive(Args)]
pub struct InventoryArgs {
    /// One docker://REGISTRY[/PREFIX] (every repository under the prefix),
    /// or bundles: files, first volumes or directories of volumes.
    #[arg(value_name = "PLACE", required = true)]
    pub places: Vec<String>,
    /// The inventory to write; - for standard output. It appears only once
    /// it is complete.
    #[arg(short = 'o', long = "output", value_name = "INV")]
    pub output: PathBuf,
    /// Replace an existing inventory file.
    #[arg(long)]
    pub force: bool,
    /// For bundles: the signer's public key; repeatable.
    #[arg(long = "pub", value_name = "KEY")]
    pub public_keys: Vec<PathBuf>,
    /// For bundles: accept them without checking who signed them.
    #[arg(long, conflicts_with = "public_keys")]
    pub allow_unsigned: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Parallel manifest requests to the registry [default: 8].
    #[arg(short = 'j', long, value_name = "N", value_parser = jobs)]
    pub jobs: Option<usize>,
    /// No summary on standard error.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The old side: a bundle (file, first volume or directory of volumes)
    /// or an inventory file, told apart by their content.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The new side, as A.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// For a bundle side: the signer's public key; repeatable.
    #[arg(long = "pub", value_name = "KEY")]
    pub public_keys: Vec<PathBuf>,
    /// For a bundle side: accept it without checking who signed it.
    #[arg(long, conflicts_with = "public_keys")]
    pub allow_unsigned: bool,
    /// Print JSON instead of text (see docs/json.md); on failure, a JSON
    /// object with the error.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command at every depth, with its path (`airlock pack`).
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(path: String, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let p = format!("{path} {}", sub.get_name());
                out.push((p.clone(), sub.clone()));
                walk(p, sub, out);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = Vec::new();
        walk("airlock".into(), &cmd, &mut out);
        out
    }

    #[test]
    fn the_tree_is_walked() {
        // Guards the two tests below against walking nothing.
        let names: Vec<String> = commands().into_iter().map(|(p, _)| p).collect();
        assert!(names.contains(&"airlock pack".to_string()), "{names:?}");
        assert!(names.len() >= 9, "{names:?}");
    }

    #[test]
    fn every_command_help_ends_with_two_or_three_examples_of_itself() {
        for (path, mut cmd) in commands() {
            // Commands that only group others show their children's.
            if cmd.get_subcommands().next().is_some() && cmd.is_subcommand_required_set() {
                continue;
            }
            let help = cmd.render_long_help().to_string();
            let examples = help
                .split_once("\nExamples:\n")
                .unwrap_or_else(|| panic!("{path} --help has no Examples section:\n{help}"))
                .1;
            let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
            assert!(
                (2..=3).contains(&lines.len()),
                "{path}: {} examples:\n{examples}",
                lines.len()
            );
            for line in lines {
                assert!(
                    line.contains(&path),
                    "{path}: example {line:?} is not of it"
                );
            }
        }
    }

    #[test]
    fn every_positional_has_a_description() {
        let mut seen = 0;
        for (path, cmd) in commands() {
            for arg in cmd.get_positionals() {
                seen += 1;
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    !help.trim().is_empty(),
                    "{path}: positional {} has no description",
                    arg.get_id()
                );
            }
        }
        assert!(seen >= 8, "only {seen} positionals found");
    }
}
