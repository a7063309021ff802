//! Untrusted text made safe to print: control characters and bidi overrides
//! become visible escapes, so a value from a bundle, an archive or a
//! registry cannot start a line, move the cursor or reorder what follows.
//!
//! Apply it to each untrusted value where it is embedded in a message, not
//! to whole messages (those may span lines on purpose). Not for JSON output:
//! serde escapes that already.

use std::borrow::Cow;
use std::fmt;

/// Displays its value with [`escape_controls`] applied:
/// `format!("signed by {}", Shown(&key_id))`.
pub struct Shown<T>(pub T);

impl<T: fmt::Display> fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        f.write_str(&escape_controls(&text))
    }
}

/// Whether `c` must not reach a terminal raw: C0 controls (with `\n`, `\r`,
/// `\t` and ESC), DEL, C1 controls, the bidi embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069), the bidi marks (U+200E, U+200F,
/// U+061C) and the Unicode line and paragraph separators (U+2028, U+2029).
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}')
}

/// `s` with each unsafe character written as an escape (`\n`, `\r`, `\t`,
/// `\u{1b}`), as Rust's `escape_debug` writes them; everything else,
/// ordinary non-ASCII text included, is left alone. Borrows when there is
/// nothing to escape.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_class_of_control_and_bidi_character() {
        let cases = [
            ("a\nOK", "a\\nOK"),
            ("a\r\nb", "a\\r\\nb"),
            ("\tx", "\\tx"),
            ("\0", "\\0"),
            ("\u{1b}[2K", "\\u{1b}[2K"),
            ("\u{7}", "\\u{7}"),
            ("\u{1f}", "\\u{1f}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("\u{85}next line", "\\u{85}next line"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("\u{9f}", "\\u{9f}"),
            ("\u{202a}\u{202b}\u{202c}", "\\u{202a}\\u{202b}\\u{202c}"),
            ("\u{202d}\u{202e}evil", "\\u{202d}\\u{202e}evil"),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("a\u{2028}b\u{2029}", "a\\u{2028}b\\u{2029}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape_controls(raw), shown, "{raw:?}");
            assert_eq!(Shown(raw).to_string(), shown, "{raw:?}");
        }
    }

    #[test]
    fn leaves_printable_text_alone_and_borrows_it() {
        for plain in [
            "café/应用:1.0",
            "docker.io/library/nginx:1.25",
            "Ünïcödé ✓ 🚀",
            "back\\slash \"quoted\"",
            "",
            "\u{a0}non-breaking \u{a0}and \u{ff}",
        ] {
            assert!(
                matches!(escape_controls(plain), Cow::Borrowed(s) if s == plain),
                "{plain:?}"
            );
            assert_eq!(Shown(plain).to_string(), plain);
        }
    }

    #[test]
    fn errors_escape_the_untrusted_values_they_embed_but_keep_their_own_lines() {
        use crate::error::{Error, SigProblem};
        let forged = "x\nOK: 1 image(s); signed by trusted".to_string();
        let e = Error::Signature {
            path: "b.airlock".into(),
            problem: SigProblem::WrongKey {
                signed_by: vec![forged.clone()],
                expected: "trusted".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "bundle b.airlock: signed by key x\\nOK: 1 image(s); signed by trusted, not by the trusted key trusted"
        );
        let e = Error::Damaged {
            path: "b.airlock".into(),
            problems: vec![forged.clone(), "volume 2 is missing".into()],
            lost: vec![forged],
            hint: String::new(),
        };
        let text = e.to_string();
        // Bullets still start lines; the injected newline does not.
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(!text.lines().any(|l| l.starts_with("OK")), "{text}");
    }

    #[test]
    fn shows_any_displayable_value() {
        let path = std::path::Path::new("/tmp/a\nb");
        assert_eq!(Shown(path.display()).to_string(), "/tmp/a\\nb");
    }
}
