//! What standard input and output may carry for one command: a bundle
//! stream or something else, never both.
//!
//! These are rules on a request, checked before anything is read or
//! written. Not for reading or writing the streams themselves.

use std::io::IsTerminal;
use std::path::Path;

use super::export::ExportTarget;
use crate::error::{Error, Result};

/// `-` as a path: the bundle goes through standard input or output.
fn is_stdio(path: &Path) -> bool {
    path == Path::new("-")
}

/// `pack -o -` writes the bundle to standard output, so a JSON report
/// cannot go there too, and it must not be a terminal.
pub fn check_pack_output(output: &Path, json_report: bool) -> Result<()> {
    pack_output(output, json_report, std::io::stdout().is_terminal())
}

fn pack_output(output: &Path, json_report: bool, stdout_is_terminal: bool) -> Result<()> {
    if !is_stdio(output) {
        return Ok(());
    }
    if json_report {
        return Err(Error::Usage(
            "--json prints to standard output, which -o - already uses for the bundle".into(),
        ));
    }
    if stdout_is_terminal {
        return Err(on_terminal("-o -", "a bundle", "-o FILE"));
    }
    Ok(())
}

/// `export --to docker-archive:-` (or `oci-archive:-`) writes the archive
/// to standard output, with the same rules as `pack -o -`; an archive file
/// is checked as [`check_output_file`] says.
pub fn check_export_output(target: &ExportTarget, json_report: bool, force: bool) -> Result<()> {
    export_output(target, json_report, std::io::stdout().is_terminal())?;
    match target {
        ExportTarget::DockerArchive(file) | ExportTarget::OciArchive(file)
            if !target.is_stdout() =>
        {
            let file_form = format!("--to {}:FILE", target.transport());
            let stdout_form = format!("{}:-", target.transport());
            check_output_file(file, force, (&file_form, &stdout_form))
        }
        _ => Ok(()),
    }
}

/// An output file is written beside its path and renamed over it, so what
/// is there must be a regular file (a symlink would be replaced, not
/// written through; a directory or a device cannot be replaced), and is
/// replaced only with `--force`.
/// `forms` is how to name a file and standard output, e.g. `("-o FILE", "-o -")`.
pub fn check_output_file(path: &Path, force: bool, forms: (&str, &str)) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let kind = if meta.file_type().is_symlink() {
        Some("a symbolic link")
    } else if meta.is_dir() {
        Some("a directory")
    } else if !meta.is_file() {
        Some("not a regular file")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(Error::Refused {
            what: path.display().to_string(),
            reason: format!("it is {kind}; airlock writes a new file and renames it into place"),
            hint: format!(
                "name a regular file ({}), or {} for standard output",
                forms.0, forms.1
            ),
        });
    }
    if force {
        return Ok(());
    }
    Err(Error::Refused {
        what: path.display().to_string(),
        reason: "exists".into(),
        hint: "pass --force to replace it, or choose another name".into(),
    })
}

fn export_output(target: &ExportTarget, json_report: bool, stdout_is_terminal: bool) -> Result<()> {
    if !target.is_stdout() {
        return Ok(());
    }
    let t = target.transport();
    if json_report {
        return Err(Error::Usage(format!(
            "--json prints to standard output, which {t}:- already uses for the archive"
        )));
    }
    if stdout_is_terminal {
        return Err(on_terminal(
            &format!("{t}:-"),
            "an archive",
            &format!("--to {t}:FILE"),
        ));
    }
    Ok(())
}

/// Binary data is not for a terminal, as zstd and tar refuse too.
fn on_terminal(flag: &str, what: &str, instead: &str) -> Error {
    Error::Refused {
        what: flag.into(),
        reason: format!("standard output is a terminal; refusing to write {what} to it"),
        hint: format!(
            "redirect standard output to a file or a pipe (> FILE, | ssh …), or use {instead}"
        ),
    }
}

/// `import -` reads the bundle from standard input, so the password cannot
/// come from there too.
pub fn check_import_input(bundle: &Path, password_from_stdin: bool) -> Result<()> {
    if is_stdio(bundle) && password_from_stdin {
        return Err(Error::Usage(
            "--password-stdin cannot be used with `import -`: standard input carries the bundle; use docker's config.json".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_on_stdout_leaves_no_room_for_json_nor_a_terminal() {
        assert!(pack_output(Path::new("-"), true, false).is_err());
        assert!(pack_output(Path::new("-"), false, false).is_ok());
        assert!(pack_output(Path::new("-"), false, true).is_err());
        assert!(pack_output(Path::new("b.airlock"), true, true).is_ok());
    }

    #[test]
    fn an_archive_on_stdout_has_the_same_rules() {
        let out = ExportTarget::parse("docker-archive:-").unwrap();
        let file = ExportTarget::parse("docker-archive:a.tar").unwrap();
        assert!(export_output(&out, true, false).is_err());
        assert!(export_output(&out, false, true).is_err());
        assert!(export_output(&out, false, false).is_ok());
        assert!(export_output(&file, true, true).is_ok());
        let oci = ExportTarget::parse("oci-archive:-").unwrap();
        assert!(export_output(&oci, true, false).is_err());
        assert!(export_output(&oci, false, true).is_err());
        assert!(export_output(&oci, false, false).is_ok());
    }

    #[test]
    fn a_bundle_on_stdin_leaves_no_room_for_a_password() {
        assert!(check_import_input(Path::new("-"), true).is_err());
        assert!(check_import_input(Path::new("-"), false).is_ok());
        assert!(check_import_input(Path::new("b.airlock"), true).is_ok());
    }
}
