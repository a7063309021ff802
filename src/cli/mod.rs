//! The `airlock` command line: flags (`args`), one function per command
//! (`commands`; `login`, `man` and `updates` for login and logout,
//! completion and man pages, inventory and diff), the one place bundles are opened and trusted (`open`),
//! sizes on the command line (`size`), the logger behind `-v` (`log`) and
//! everything printed (`render`).
//!
//! Not for rules between flags or for work on images: those live in the
//! library (`airlock::ops` and below), where tests and other front ends can
//! reach them.

pub mod args;
pub mod commands;
pub mod flags;
pub mod log;
pub mod login;
pub mod man;
pub mod open;
pub mod passphrase;
pub mod render;
pub mod size;
pub mod updates;
