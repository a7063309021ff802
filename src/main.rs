//! The `airlock` binary: parse the command line, run the command, map the
//! result to an exit code. Nothing else; see `cli/` for flags, commands and
//! output, and the library for the work.
//!
//! Exit status: 0 success, 1 failure, 2 a mistake in how the command was
//! called (clap's own, and `Error::Usage` found after parsing), 141 (a
//! SIGPIPE death) when standard output was closed early, as in
//! `airlock inspect B | head -1`.
//!
//! With `--json` (at any subcommand level), a failure is also printed as a
//! JSON object on standard output (docs/json.md), clap's own refusals too.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use cli::args::{CacheCommand, Cli, Command, KeyCommand};
use cli::{commands, login, man, render, updates};

fn main() -> ExitCode {
    let matches = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match matches {
        Ok(parsed) => parsed,
        Err(e) => {
            if e.use_stderr() && cli::args::json_in_raw_args(std::env::args_os()) {
                render::usage_error_json(&e);
            }
            e.exit()
        }
    };
    let json = cli::args::json_requested(&matches);
    cli::log::init(cli.verbose);
    let result = match cli.command {
        Command::Keygen(args) => commands::keygen(args),
        Command::Pack(args) => commands::pack(args),
        Command::Verify(args) => commands::verify(args),
        Command::Import(args) => commands::import(args),
        Command::Repair(args) => commands::repair(args),
        Command::Inspect(args) => commands::inspect(args),
        Command::Export(args) => commands::export(args),
        Command::Completion(args) => man::completion(args),
        Command::Man(args) => man::man(args),
        Command::Cache(CacheCommand::Du(args)) => commands::cache_du(args),
        Command::Cache(CacheCommand::Ls(args)) => commands::cache_ls(args),
        Command::Cache(CacheCommand::Prune(args)) => commands::cache_prune(args),
        Command::Key(KeyCommand::Id(args)) => commands::key_id(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Copy(args) => commands::copy(args),
        Command::Inventory(args) => updates::inventory(args),
        Command::Diff(args) => updates::diff(args),
        Command::Serve(args) => commands::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if render::is_closed_stdout(&e) => render::die_of_closed_stdout(),
        Err(e) => {
            if json {
                render::error_json(&e);
            }
            render::error(&e);
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
