//! The `airlock` binary: parse the command line, run the command, map the
//! result to an exit code. Nothing else; see `cli/` for flags, commands and
//! output, and the library for the work.
//!
//! Exit status: 0 success, 1 failure, 2 a mistake in how the command was
//! called (clap's own, and `Error::Usage` found after parsing), 141 (a
//! SIGPIPE death) when standard output was closed early, as in
//! `airlock inspect B | head -1`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::{commands, render};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::log::init(cli.verbose);
    let result = match cli.command {
        Command::Keygen(args) => commands::keygen(args),
        Command::Pack(args) => commands::pack(args),
        Command::Verify(args) => commands::verify(args),
        Command::Import(args) => commands::import(args),
        Command::Repair(args) => commands::repair(args),
        Command::Inspect(args) => commands::inspect(args),
        Command::Export(args) => commands::export(args),
        Command::Copy(args) => commands::copy(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if render::is_closed_stdout(&e) => render::die_of_closed_stdout(),
        Err(e) => {
            render::error(&e);
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
