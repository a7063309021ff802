//! `airlock completion` and `airlock man`: shell completion scripts and
//! man pages, generated from the flags' own definitions.
//!
//! Not for the flags themselves (`args`).

use std::path::Path;

use airlock::{Error, Result};
use clap::CommandFactory;

use super::args::{Cli, CompletionArgs, ManArgs};
use super::render;

pub fn completion(args: CompletionArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "airlock", &mut script);
    render::raw(&script);
    Ok(())
}

/// `airlock man [COMMAND]`, or every page into `--dir`.
pub fn man(args: ManArgs) -> Result<()> {
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    if let Some(dir) = args.dir {
        let mut written = 0;
        write_pages(&top, &dir, &mut written)?;
        render::man_pages_written(written, &dir);
        return Ok(());
    }
    let page = match args.command {
        None => top,
        Some(name) => top.find_subcommand(&name).cloned().ok_or_else(|| {
            let names: Vec<&str> = top.get_subcommands().map(|c| c.get_name()).collect();
            Error::Usage(format!(
                "no command {name:?} has a man page; the commands are: {}",
                names.join(", ")
            ))
        })?,
    };
    render::raw(&man_page(page).1);
    Ok(())
}

/// A command's page in roff, and its file name (`airlock-pack.1`).
///
/// clap_mangen's sections, but the `--help` examples go into an EXAMPLES
/// section as they are (no filling, `\-` for each `-`), not into its
/// justified EXTRA, so that a command copied from the page runs.
fn man_page(mut cmd: clap::Command) -> (String, Vec<u8>) {
    let examples = cmd.get_after_help().map(|h| h.to_string());
    cmd = cmd.after_help(None::<&str>).after_long_help(None::<&str>);
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("airlock {}", env!("CARGO_PKG_VERSION")))
        .manual("airlock manual");
    let mut roff = Vec::new();
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd.get_subcommands().any(|c| !c.is_hide_set());
    // Writes into memory: none of these can fail.
    let _ = man.render_title(&mut roff);
    let _ = man.render_name_section(&mut roff);
    let _ = man.render_synopsis_section(&mut roff);
    let _ = man.render_description_section(&mut roff);
    if has_args {
        let _ = man.render_options_section(&mut roff);
    }
    if has_subs {
        let _ = man.render_subcommands_section(&mut roff);
    }
    if let Some(text) = examples {
        roff.extend_from_slice(b".SH EXAMPLES\n.nf\n");
        for line in text.lines().skip_while(|l| l.ends_with(':')) {
            let line = line.trim().replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with(['.', '\'']) {
                roff.extend_from_slice(b"\\&");
            }
            roff.extend_from_slice(line.as_bytes());
            roff.push(b'\n');
        }
        roff.extend_from_slice(b".fi\n");
    }
    if cmd.get_version().is_some() {
        let _ = man.render_version_section(&mut roff);
    }
    (man.get_filename(), roff)
}

/// `cmd`'s page and those of its subcommands, at every depth.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut usize) -> Result<()> {
    let (name, roff) = man_page(cmd.clone());
    let path = dir.join(name);
    std::fs::write(&path, roff).map_err(|e| Error::io("write man page", &path, e))?;
    log::debug!("wrote {}", path.display());
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
