//! The settings of one configuration file plus the `CMX_KMS_*` environment, taken key by
//! key: each known key is taken once (environment first, then file), and whatever is left
//! at the end is an unknown key. Every problem is collected, none stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::{ConfigError, ConfigWarning, Origin, Problem, Warning, quote};
use super::keys::{self, ENV_PREFIX, KEYS, NON_CONFIG_ENV_VARS};
use super::properties::Lexed;
use super::values::nearest;

/// A value as found, with where it was found.
pub(crate) struct Raw {
    pub value: Zeroizing<String>,
    pub origin: Origin,
}

struct FileValue {
    value: Zeroizing<String>,
    line: usize,
    malformed: bool,
}

struct EnvValue {
    var: String,
    value: Zeroizing<String>,
}

/// What looking a key up found.
enum Lookup {
    Absent,
    /// Present, but its problem was already reported (a malformed escape).
    Reported,
    Empty(Origin),
    Set(Raw),
}

/// A configuration being taken apart.
pub(crate) struct ConfigFile {
    path: PathBuf,
    dir: PathBuf,
    file: BTreeMap<String, FileValue>,
    env: BTreeMap<&'static str, EnvValue>,
    taken: BTreeSet<&'static str>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

impl ConfigFile {
    /// Builds the key map from lexed entries (refusing duplicates) and the `CMX_KMS_*`
    /// variables of `env` (refusing unknown ones). Relative paths will resolve against the
    /// directory of `path`.
    pub fn new(path: &Path, lexed: Lexed, env: &[(String, String)]) -> Self {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut this = Self {
            path: path.to_path_buf(),
            dir,
            file: BTreeMap::new(),
            env: BTreeMap::new(),
            taken: BTreeSet::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        for error in lexed.errors {
            this.error(this.at(Some(error.line)), None, Problem::Lex(error.kind));
        }
        for entry in lexed.entries {
            let origin = this.at(Some(entry.line));
            if let Some(first) = this.file.get(&entry.key) {
                let problem = Problem::DuplicateKey {
                    first_line: first.line,
                };
                this.error(origin, Some(&entry.key), problem);
                continue;
            }
            if entry.trailing_whitespace {
                this.warn(
                    origin.clone(),
                    Some(&entry.key),
                    Warning::TrailingWhitespace,
                );
            }
            if let Some(line) = entry.swallowed_line {
                let warning = Warning::Other(format!(
                    "the line before line {line} ends with a backslash, which joins line {line} \
                     (itself a setting) into this value; remove the backslash if it was not meant"
                ));
                this.warn(origin, Some(&entry.key), warning);
            }
            let value = FileValue {
                value: entry.value,
                line: entry.line,
                malformed: entry.malformed,
            };
            this.file.insert(entry.key, value);
        }
        for (var, value) in env {
            this.add_env(var, value);
        }
        this.warn_overridden_lines();
        this
    }

    /// An environment variable that overrides a line of the file with a
    /// value: that value is not used, which an operator editing the file
    /// should know.
    fn warn_overridden_lines(&mut self) {
        let overridden: Vec<(&'static str, String, usize)> = self
            .env
            .iter()
            .filter_map(|(key, env)| {
                // An empty line is left for the environment to fill.
                let line = self.file.get(*key).filter(|v| !v.value.is_empty())?;
                Some((*key, env.var.clone(), line.line))
            })
            .collect();
        for (key, var, line) in overridden {
            let warning = Warning::Other(format!(
                "overrides line {line} of {}, whose value is not used",
                self.path.display()
            ));
            self.warn(Origin::Env { var }, Some(key), warning);
        }
    }

    fn add_env(&mut self, var: &str, value: &str) {
        if !var.starts_with(ENV_PREFIX) || NON_CONFIG_ENV_VARS.contains(&var) {
            return;
        }
        let origin = Origin::Env {
            var: var.to_string(),
        };
        let Some(spec) = KEYS
            .iter()
            .find(|k| keys::env_var_name(k.name).as_deref() == Some(var))
        else {
            let names: Vec<String> = KEYS
                .iter()
                .filter_map(|k| keys::env_var_name(k.name))
                .collect();
            let suggestion = nearest(var, names.iter().map(String::as_str)).map(str::to_string);
            self.error(origin, None, Problem::UnknownEnvVar { suggestion });
            return;
        };
        if value.ends_with([' ', '\t', '\x0c']) {
            let warning = Warning::Other(
                "the value ends with whitespace, which is kept as part of the value; check the quoting".into(),
            );
            self.warn(origin, Some(spec.name), warning);
        }
        let value = EnvValue {
            var: var.to_string(),
            value: Zeroizing::new(value.to_string()),
        };
        self.env.insert(spec.name, value);
    }

    /// The file's origin at `line`.
    pub fn at(&self, line: Option<usize>) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line,
        }
    }

    /// Where `key` is set (environment variable or file line), or the file itself.
    pub fn origin_of(&self, key: &str) -> Origin {
        if let Some(env) = self.env.get(key) {
            return Origin::Env {
                var: env.var.clone(),
            };
        }
        self.at(self.file.get(key).map(|v| v.line))
    }

    /// Whether `key` has a non-empty value (environment or file). Does not take it.
    pub fn is_set(&self, key: &str) -> bool {
        match self.env.get(key) {
            Some(env) => !env.value.is_empty(),
            None => self.file.get(key).is_some_and(|v| !v.value.is_empty()),
        }
    }

    /// Records an error.
    pub fn error(&mut self, origin: Origin, key: Option<&str>, problem: Problem) {
        self.errors.push(ConfigError {
            origin,
            key: key.map(str::to_string),
            problem,
        });
    }

    /// Records a warning.
    pub fn warn(&mut self, origin: Origin, key: Option<&str>, warning: Warning) {
        self.warnings.push(ConfigWarning {
            origin,
            key: key.map(str::to_string),
            warning,
        });
    }

    fn lookup(&mut self, key: &'static str) -> Lookup {
        self.taken.insert(key);
        let (value, origin, malformed) = if let Some(env) = self.env.get(key) {
            (
                env.value.clone(),
                Origin::Env {
                    var: env.var.clone(),
                },
                false,
            )
        } else if let Some(file) = self.file.get(key) {
            (file.value.clone(), self.at(Some(file.line)), file.malformed)
        } else {
            return Lookup::Absent;
        };
        match () {
            () if malformed => Lookup::Reported,
            () if value.is_empty() => Lookup::Empty(origin),
            () => Lookup::Set(Raw { value, origin }),
        }
    }

    /// Takes `key`: its value, or `None` when it is absent or empty (empty = default).
    pub fn get(&mut self, key: &'static str) -> Option<Raw> {
        match self.lookup(key) {
            Lookup::Set(raw) => Some(raw),
            Lookup::Absent | Lookup::Reported | Lookup::Empty(_) => None,
        }
    }

    /// Takes a required `key`; reports it missing or empty, `what` describing the value.
    pub fn get_required(&mut self, key: &'static str, what: &str) -> Option<Raw> {
        match self.lookup(key) {
            Lookup::Set(raw) => return Some(raw),
            Lookup::Reported => {}
            Lookup::Absent => self.report_required(None, key, what),
            Lookup::Empty(origin) => self.report_required(Some(origin), key, what),
        }
        None
    }

    /// Reports a required key as missing (no origin) or empty (where it is set empty).
    pub fn report_required(&mut self, origin: Option<Origin>, key: &str, what: &str) {
        let what = what.to_string();
        match origin {
            Some(origin) => self.error(origin, Some(key), Problem::Empty { what }),
            None => self.error(self.at(None), Some(key), Problem::Missing { what }),
        }
    }

    /// Parses a taken value with `parse`, reporting a failure.
    pub fn check<T>(
        &mut self,
        key: &'static str,
        raw: Raw,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(&raw.value) {
            Ok(value) => Some(value),
            Err(expected) => {
                let secret = keys::find(key).is_some_and(|k| k.secret);
                let value = if secret {
                    "(hidden)".to_string()
                } else {
                    quote(&raw.value)
                };
                self.error(raw.origin, Some(key), Problem::Invalid { value, expected });
                None
            }
        }
    }

    /// Takes and parses an optional `key`, falling back to `default` (also after an error,
    /// which is reported, so that checking can go on).
    pub fn parse_or<T>(
        &mut self,
        key: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.get(key) {
            Some(raw) => self.check(key, raw, parse).unwrap_or(default),
            None => default,
        }
    }

    /// Takes an optional string.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        self.get(key).map(|raw| raw.value.to_string())
    }

    /// Takes a string with a default.
    pub fn string_or(&mut self, key: &'static str, default: &str) -> String {
        self.string(key).unwrap_or_else(|| default.to_string())
    }

    /// Takes an optional secret.
    pub fn secret(&mut self, key: &'static str) -> Option<SecretString> {
        self.get(key)
            .map(|raw| SecretString::from(raw.value.as_str()))
    }

    /// Takes an optional path, resolved against the configuration file's directory.
    pub fn path(&mut self, key: &'static str) -> Option<PathBuf> {
        self.get(key).map(|raw| self.resolve(&raw.value))
    }

    /// Takes a path with a default; both resolve against the configuration directory.
    pub fn path_or(&mut self, key: &'static str, default: &str) -> PathBuf {
        self.path(key).unwrap_or_else(|| self.resolve(default))
    }

    /// Resolves a path against the configuration file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }

    /// Takes `key` and its legacy name; returns the value and the key it came from. The
    /// legacy key draws a deprecation warning; both set in the file to different values is
    /// an error naming both lines. The environment overrides both.
    pub fn get_with_legacy(
        &mut self,
        key: &'static str,
        legacy: &'static str,
    ) -> Option<(&'static str, Raw)> {
        let new = self.get(key);
        let old = self.get(legacy);
        let Some(old) = old else {
            return new.map(|raw| (key, raw));
        };
        self.warn(
            old.origin.clone(),
            Some(legacy),
            Warning::Deprecated { replacement: key },
        );
        let Some(new) = new else {
            return Some((legacy, old));
        };
        let both_in_file = matches!(new.origin, Origin::File { .. });
        if both_in_file && new.value.trim() != old.value.trim() {
            let old_line = match &old.origin {
                Origin::File {
                    line: Some(line), ..
                } => line.to_string(),
                _ => "?".into(),
            };
            let detail = format!(
                "{} disagrees with {legacy} = {} on line {old_line}; remove the legacy {legacy} line",
                quote(&new.value),
                quote(&old.value),
            );
            self.error(new.origin.clone(), Some(key), Problem::Conflict { detail });
        }
        Some((key, new))
    }

    /// The keys taken so far.
    #[cfg(test)]
    pub fn taken(&self) -> &BTreeSet<&'static str> {
        &self.taken
    }

    /// Reports every key of the file that was never taken, and returns all problems, errors
    /// in file order (whole-file problems first, environment variables last).
    pub fn finish(mut self) -> (Vec<ConfigError>, Vec<ConfigWarning>) {
        let leftovers: Vec<(String, usize)> = self
            .file
            .iter()
            .filter(|(key, _)| !self.taken.contains(key.as_str()))
            .map(|(key, value)| (key.clone(), value.line))
            .collect();
        for (key, line) in leftovers {
            let suggestion = nearest(&key, KEYS.iter().map(|k| k.name)).map(str::to_string);
            self.error(
                self.at(Some(line)),
                Some(&key),
                Problem::UnknownKey { suggestion },
            );
        }
        self.errors.sort_by_key(|e| rank(&e.origin));
        self.warnings.sort_by_key(|w| rank(&w.origin));
        (self.errors, self.warnings)
    }
}

fn rank(origin: &Origin) -> (u8, usize) {
    match origin {
        Origin::File { line: None, .. } => (0, 0),
        Origin::File {
            line: Some(line), ..
        } => (1, *line),
        Origin::Env { .. } => (2, 0),
    }
}
