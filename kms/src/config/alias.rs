//! Keystore alias patterns: case-insensitive globs where `*` matches any run of characters
//! (keytool aliases are case-insensitive; Java lower-cases them).

use std::fmt;

/// One alias pattern, such as `cmxBackend*`.
#[derive(Clone, PartialEq, Eq)]
pub struct AliasPattern {
    /// The pattern as written.
    text: String,
    /// Lower-cased characters of the pattern, for matching.
    lower: Vec<char>,
}

impl AliasPattern {
    /// Parses one pattern: non-empty, no whitespace, no commas; `*` is the only wildcard.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("is an empty alias pattern (expected e.g. cmxDevice*)".into());
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c.is_control())
        {
            return Err(
                "contains whitespace or a control character (expected e.g. cmxDevice*)".into(),
            );
        }
        Ok(Self {
            text: text.to_string(),
            lower: text.to_lowercase().chars().collect(),
        })
    }

    /// Parses a comma-separated list; blanks around items are ignored.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let patterns = text
            .split(',')
            .map(|item| Self::parse(item.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            return Err("is an empty list (expected e.g. cmxDevice*)".into());
        }
        Ok(patterns)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern is `*` alone (or only stars): it matches every alias.
    pub fn matches_everything(&self) -> bool {
        self.lower.iter().all(|&c| c == '*')
    }

    /// Whether `alias` matches, ignoring case.
    pub fn matches(&self, alias: &str) -> bool {
        let alias: Vec<char> = alias.to_lowercase().chars().collect();
        // Iterative glob matching: on a mismatch, let the last `*` absorb one more character.
        let (mut p, mut a) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while a < alias.len() {
            match self.lower.get(p) {
                Some('*') => {
                    star = Some((p, a));
                    p += 1;
                }
                Some(&c) if alias.get(a) == Some(&c) => {
                    p += 1;
                    a += 1;
                }
                _ => match star {
                    Some((star_p, star_a)) => {
                        p = star_p + 1;
                        a = star_a + 1;
                        star = Some((star_p, star_a + 1));
                    }
                    None => return false,
                },
            }
        }
        self.lower
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
    }
}

impl fmt::Display for AliasPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for AliasPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AliasPattern({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> AliasPattern {
        AliasPattern::parse(text).unwrap()
    }

    #[test]
    fn glob_matching_ignores_case() {
        assert!(p("cmxBackend*").matches("cmxbackend"));
        assert!(p("cmxBackend*").matches("CMXBACKEND-2025"));
        assert!(!p("cmxBackend*").matches("cmxDevice"));
        assert!(!p("cmxBackend*").matches("xcmxBackend"));
        assert!(p("kmsClient").matches("KMSCLIENT"));
        assert!(!p("kmsClient").matches("kmsClient2"));
        assert!(p("*dev*ce*").matches("cmxDeviceA"));
        assert!(p("a*b*c").matches("aXXbYYbc"));
        assert!(!p("a*b*c").matches("aXXbYYbcd"));
        assert!(p("*").matches(""));
        assert!(p("**").matches("anything"));
        assert!(!p("a").matches(""));
        assert!(p("\u{c9}t\u{e9}*").matches("\u{e9}T\u{c9}2"));
    }

    #[test]
    fn lists() {
        let list = AliasPattern::parse_list(" cmxDevice* , oldDevice ").unwrap();
        assert_eq!(
            list.iter().map(AliasPattern::as_str).collect::<Vec<_>>(),
            ["cmxDevice*", "oldDevice"]
        );
        assert!(AliasPattern::parse_list("a,,b").is_err());
        assert!(AliasPattern::parse_list("a b").is_err());
        assert!(p("*").matches_everything());
        assert!(!p("cmx*").matches_everything());
    }
}
