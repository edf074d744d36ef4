//! Parsers for single values. Each returns the parsed value or the "expected ..." half of an
//! error message (the caller adds the quoted value).

use std::net::IpAddr;
use std::time::Duration;

/// The longest duration we accept anywhere: one year. Keeps `Instant + duration` far from
/// overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses an unsigned decimal integer: digits only (no sign, no `_`, no hex).
pub fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses a TCP port, 1-65535.
pub fn port(text: &str) -> Result<u16, String> {
    match parse_u64(text).and_then(|n| u16::try_from(n).ok()) {
        Some(port) if port > 0 => Ok(port),
        _ => Err("is not a port number (expected 1-65535)".into()),
    }
}

/// Parses a TCP port where 0 means "off".
pub fn port_or_zero(text: &str) -> Result<u16, String> {
    parse_u64(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| "is not a port number (expected 1-65535, or 0 to turn it off)".into())
}

/// Returns a parser for an integer in `min..=max`.
pub fn int_in<T>(min: u64, max: u64) -> impl Fn(&str) -> Result<T, String>
where
    T: TryFrom<u64>,
{
    move |text| {
        parse_u64(text)
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("is not a whole number from {min} to {max}"))
    }
}

/// Parses a duration: plain seconds (`30`, as the guide writes) or a number with a unit
/// `ms`, `s`, `m` or `h` (`500ms`, `10s`, `5m`, `1h`). At most [`MAX_DURATION`].
pub fn duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "is not a duration (expected seconds such as 30, or a number with a unit: 500ms, 10s, 5m, 1h)";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text
        .split_at_checked(split)
        .ok_or_else(|| EXPECTED.to_string())?;
    let n = parse_u64(number).ok_or_else(|| EXPECTED.to_string())?;
    let millis_per_unit: u64 = match unit {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(EXPECTED.into()),
    };
    let value = n.checked_mul(millis_per_unit).map(Duration::from_millis);
    match value {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err("is too long (at most one year, 8760h)".into()),
    }
}

/// Returns a duration parser that also requires a value greater than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        Duration::ZERO => Err("must be greater than 0 (expected e.g. 10s)".into()),
        d => Ok(d),
    }
}

/// Parses an IP address (no host names: the server binds to it).
pub fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| "is not an IP address (expected e.g. 0.0.0.0, 127.0.0.1 or ::)".into())
}

/// Returns a parser that picks one of `choices`, case-insensitively.
pub fn one_of<T: Copy>(
    choices: &'static [(&'static str, T)],
) -> impl Fn(&str) -> Result<T, String> {
    move |text| {
        choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|&(_, v)| v)
            .ok_or_else(|| {
                let names: Vec<_> = choices.iter().map(|(n, _)| *n).collect();
                format!("is not one of {}", names.join(", "))
            })
    }
}

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = row.get(j).copied().unwrap_or(usize::MAX);
            let cost = usize::from(ca != *cb);
            let best = (diagonal + cost)
                .min(above.saturating_add(1))
                .min(left.saturating_add(1));
            diagonal = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = best;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// The candidate closest to `wrong` (case-insensitively), if it is close enough to be a typo.
pub fn nearest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong = wrong.to_lowercase();
    let limit = (wrong.chars().count() / 5).clamp(2, 4);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port("8443"), Ok(8443));
        assert_eq!(port("65535"), Ok(65535));
        for bad in [
            "0",
            "65536",
            "84x3",
            "",
            "-1",
            "+80",
            " 80",
            "0x50",
            "99999999999999999999999",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert_eq!(port_or_zero("0"), Ok(0));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("8760h"), Ok(MAX_DURATION));
        for bad in [
            "",
            "s",
            "1.5s",
            "10 s",
            "-1",
            "1d",
            "10S",
            "8761h",
            "18446744073709551615h",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn integers_and_choices() {
        assert_eq!(int_in::<u32>(1, 10)("10"), Ok(10));
        assert!(int_in::<u32>(1, 10)("11").is_err());
        assert!(int_in::<u32>(1, 10)("0").is_err());
        let p = one_of(&[("kmip1", 1), ("vault", 2)]);
        assert_eq!(p("VAULT"), Ok(2));
        assert_eq!(p("kmip2"), Err("is not one of kmip1, vault".to_string()));
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let keys = ["kms.server.port", "kms.keystore.password"];
        assert_eq!(nearest("kms.sever.port", keys), Some("kms.server.port"));
        assert_eq!(
            nearest("kms.keystore.pasword", keys),
            Some("kms.keystore.password")
        );
        assert_eq!(nearest("KMS.SERVER.PORT", keys), Some("kms.server.port"));
        assert_eq!(nearest("kms.something.else", keys), None);
    }
}
