//! What standard input and output may carry for one command: a bundle
//! stream or something else, never both.
//!
//! These are rules on a request, checked before anything is read or
//! written. Not for reading or writing the streams themselves.

use std::path::Path;

use crate::error::{Error, Result};

/// `-` as a path: the bundle goes through standard input or output.
fn is_stdio(path: &Path) -> bool {
    path == Path::new("-")
}

/// `pack -o -` writes the bundle to standard output, so a JSON report
/// cannot go there too.
pub fn check_pack_output(output: &Path, json_report: bool) -> Result<()> {
    if is_stdio(output) && json_report {
        return Err(Error::Usage(
            "--json prints to standard output, which -o - already uses for the bundle".into(),
        ));
    }
    Ok(())
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
    fn a_bundle_on_stdout_leaves_no_room_for_json() {
        assert!(check_pack_output(Path::new("-"), true).is_err());
        assert!(check_pack_output(Path::new("-"), false).is_ok());
        assert!(check_pack_output(Path::new("b.airlock"), true).is_ok());
    }

    #[test]
    fn a_bundle_on_stdin_leaves_no_room_for_a_password() {
        assert!(check_import_input(Path::new("-"), true).is_err());
        assert!(check_import_input(Path::new("-"), false).is_ok());
        assert!(check_import_input(Path::new("b.airlock"), true).is_ok());
    }
}
