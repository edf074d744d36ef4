//! Configuration problems: every error and warning names where it comes from (file and
//! line, or environment variable), the key, and what to do about it.
//!
//! Messages never contain the value of a secret key, nor the value of an unknown key (a
//! misspelled `kms.keystore.pasword` still holds a password).

use std::fmt;
use std::path::PathBuf;

use super::properties::LexErrorKind;

/// Where a setting or a problem comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A configuration file; `line` is `None` for whole-file problems (unreadable file,
    /// missing key).
    File { path: PathBuf, line: Option<usize> },
    /// An environment variable (`CMX_KMS_*`).
    Env { var: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Self::File { path, line: None } => write!(f, "{}", path.display()),
            Self::Env { var } => write!(f, "environment variable {}", var.escape_debug()),
        }
    }
}

/// One configuration error. `Display` gives one line:
/// `origin: key: problem`, e.g.
/// `/usr/share/kms/conf/kms.properties:12: kms.server.port: '84x3' is not a port number (expected 1-65535)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {}{problem}", key_prefix(.key))]
pub struct ConfigError {
    /// Where the problem is.
    pub origin: Origin,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub problem: Problem,
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!("{}: ", k.escape_debug()))
        .unwrap_or_default()
}

/// What is wrong with a setting. Each message ends with what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file could not be read.
    #[error("cannot read the configuration file ({reason}): check the path and its permissions")]
    Unreadable { reason: String },
    /// The file is larger than the lexer accepts.
    #[error("the file is larger than {limit} bytes: this is not a kms.properties file")]
    TooLarge { limit: usize },
    /// A lexical problem on one line.
    #[error("{0}")]
    Lex(LexErrorKind),
    /// A key no part of cmx-kms reads.
    #[error("unknown key{}; fix the spelling or remove the line", suggest(.suggestion))]
    UnknownKey { suggestion: Option<String> },
    /// A `CMX_KMS_*` variable that maps to no key.
    #[error("does not name a configuration key{}; fix the name or unset the variable", suggest(.suggestion))]
    UnknownEnvVar { suggestion: Option<String> },
    /// A key set twice in the file (Java would silently keep the last).
    #[error("set again here, first set on line {first_line}; keep only one of the two lines")]
    DuplicateKey { first_line: usize },
    /// A required key is absent; `what` describes the value to give.
    #[error("missing; add it with {what}")]
    Missing { what: String },
    /// A required key is present but empty; `what` describes the value to give.
    #[error("is empty; set it to {what}")]
    Empty { what: String },
    /// A value that does not parse or is out of range. `value` is already quoted, or
    /// `(hidden)` for secrets.
    #[error("{value} {expected}")]
    Invalid { value: String, expected: String },
    /// A key that is required only because another key has a certain value.
    #[error("missing, but required because {because}; add {hint}")]
    RequiredBy { because: String, hint: String },
    /// Two settings that must agree do not.
    #[error("{detail}")]
    Conflict { detail: String },
    /// A file holding a secret is readable by other users (same rule and words as the
    /// CLI's `--password-file`).
    #[error(
        "{} is readable by other users (mode {mode:03o}); run chmod 600 on it",
        path.display()
    )]
    FileTooOpen { path: PathBuf, mode: u32 },
    /// A file the key names cannot be used as it is (missing, a directory, not
    /// writable, not what it should hold); `detail` names the file and what to do.
    #[error("{detail}")]
    NamedFile { detail: String },
}

fn suggest(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// Every configuration error found, in file order. `Display` prints one line per error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The errors; never empty.
    pub errors: Vec<ConfigError>,
    /// Warnings found along the way (also worth printing when the config is rejected).
    pub warnings: Vec<ConfigWarning>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for error in &self.errors {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something worth telling the operator that does not stop the server.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {}{warning}", key_prefix(.key))]
pub struct ConfigWarning {
    /// Where it is.
    pub origin: Origin,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// What it is.
    pub warning: Warning,
}

/// The kinds of warnings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// The value ends in whitespace, which is kept.
    #[error(
        "the value ends with whitespace, which is kept as part of the value (Java semantics); \
         remove it, or write it as '\\ ' if it is intended"
    )]
    TrailingWhitespace,
    /// The file was not UTF-8 and was read as ISO-8859-1.
    #[error(
        "the file is not valid UTF-8 (first bad byte on line {line}), read as ISO-8859-1 instead; \
         save it as UTF-8"
    )]
    Latin1 { line: usize },
    /// A legacy key is set.
    #[error("deprecated; rename it to {replacement}")]
    Deprecated { replacement: &'static str },
    /// A key that has no effect with the current settings.
    #[error("ignored because {reason}")]
    Ignored { reason: String },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Quotes a value for a message: at most 80 characters, control characters escaped.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::from("'");
    for (n, c) in value.chars().enumerate() {
        if n == 80 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('\'');
    out
}
