//! The `airlock` binary: parse the command line, run the command, map the
//! result to an exit code. Nothing else; see `cli/` for flags, commands and
//! output, and the library for the work.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::{commands, render};

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Keygen(args) => commands::keygen(args),
        Command::Pack(args) => commands::pack(args),
        Command::Verify(args) => commands::verify(args),
        Command::Import(args) => commands::import(args),
        Command::Repair(args) => commands::repair(args),
        Command::Inspect(args) => commands::inspect(args),
        Command::Export(args) => commands::export(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            render::error(&e);
            ExitCode::FAILURE
        }
    }
}
