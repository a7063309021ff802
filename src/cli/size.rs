//! Sizes on the command line (`8M`, `4.7G`, `4GiB`, `100`): one parser, with
//! the meaning of a bare unit letter as its parameter.
//!
//! Not for printing sizes; output uses indicatif's `BinaryBytes`.

/// What `K`, `M`, `G` and `T` mean.
#[derive(Clone, Copy)]
pub enum Units {
    /// Always binary (`8M` is 8 MiB); a trailing `i` is allowed and ignored.
    Binary,
    /// Decimal as media are labelled (`4.7G` is a DVD); `KiB`…`TiB` for
    /// binary.
    Media,
}

/// `--chunk-size` and other sizes of memory or transfers: binary units.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size_in(s, Units::Binary)
}

/// `--split`: media sizes.
pub fn parse_media_size(s: &str) -> Result<u64, String> {
    parse_size_in(s, Units::Media)
}

/// A positive size with an optional unit letter and an optional `B`.
pub fn parse_size_in(s: &str, units: Units) -> Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']);
    let (t, base, example) = match units {
        // Only a lowercase `i` here, as the flag has always accepted.
        Units::Binary => (t.trim_end_matches('i'), 1024u64, "8M or 4.7G"),
        Units::Media => {
            let base = if t.ends_with(['i', 'I']) { 1024 } else { 1000 };
            (t.trim_end_matches(['i', 'I']), base, "4G, 4.7G or 700M")
        }
    };
    let (num, power) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1),
        Some('M' | 'm') => (&t[..t.len() - 1], 2),
        Some('G' | 'g') => (&t[..t.len() - 1], 3),
        Some('T' | 't') => (&t[..t.len() - 1], 4),
        _ => (t, 0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like {example}"))?;
    if v <= 0.0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok((v * base.pow(power) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_use_powers_of_1024() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("8mb"), Ok(8 << 20));
        assert_eq!(parse_size(" 2T "), Ok(2 << 40));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
    }

    #[test]
    fn media_sizes_are_decimal_unless_marked_binary() {
        assert_eq!(parse_media_size("4.7G"), Ok(4_700_000_000));
        assert_eq!(parse_media_size("700M"), Ok(700_000_000));
        assert_eq!(parse_media_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_media_size("4GIB"), Ok(4 << 30));
        assert_eq!(parse_media_size("1000"), Ok(1000));
    }

    #[test]
    fn bad_sizes_are_refused_with_an_example() {
        assert_eq!(
            parse_size("x"),
            Err(r#""x" is not a size like 8M or 4.7G"#.into())
        );
        // An uppercase `I` was never a binary marker for binary sizes.
        assert_eq!(
            parse_size("4GIB"),
            Err(r#""4GIB" is not a size like 8M or 4.7G"#.into())
        );
        assert_eq!(
            parse_media_size("foo"),
            Err(r#""foo" is not a size like 4G, 4.7G or 700M"#.into())
        );
        assert_eq!(parse_size("0"), Err(r#""0" must be more than zero"#.into()));
        assert_eq!(
            parse_media_size("-1G"),
            Err(r#""-1G" must be more than zero"#.into())
        );
    }
}
