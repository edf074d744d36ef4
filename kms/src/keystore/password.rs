//! How the CLI gets a keystore password without putting it on the command
//! line (where `ps` and shell history would show it): a password file, then
//! an environment variable, then a prompt on the terminal with echo off.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use secrecy::SecretString;
use zeroize::Zeroizing;

/// The environment variable the CLI reads the keystore password from.
pub const KEYSTORE_PASSWORD_ENV: &str = "CMX_KMS_KEYSTORE_PASSWORD";

/// A password file larger than this is certainly not a password file.
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("cannot read password file {}: {source}", path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "password file {} is readable by other users (mode {mode:03o}); run chmod 600 on it",
        path.display()
    )]
    FileTooOpen { path: PathBuf, mode: u32 },

    #[error("the password from {source_name} is empty")]
    Empty { source_name: String },

    #[error("environment variable {var} is not valid UTF-8")]
    NotUnicode { var: String },

    #[error("cannot read the password from the terminal: {0}")]
    Terminal(#[source] io::Error),

    #[error(
        "no password given: put it in a file passed with --password-file (first line, mode \
         600), or set {env_var}, or run the command on a terminal to be asked for it"
    )]
    NoSource { env_var: String },
}

/// Gets a password: first line of `password_file` if given, else the
/// environment variable `env_var` if set, else a prompt on the controlling
/// terminal (no echo) if stdin is a terminal; otherwise an error saying how
/// to pass one.
pub fn read_password(
    password_file: Option<&Path>,
    env_var: &str,
    prompt: &str,
) -> Result<SecretString, PasswordError> {
    use std::io::IsTerminal;
    read_password_from(password_file, env_var, prompt, io::stdin().is_terminal())
}

fn read_password_from(
    password_file: Option<&Path>,
    env_var: &str,
    prompt: &str,
    may_prompt: bool,
) -> Result<SecretString, PasswordError> {
    if let Some(path) = password_file {
        return from_file(path);
    }
    match std::env::var(env_var) {
        Ok(value) => {
            let value = Zeroizing::new(value);
            if value.is_empty() {
                return Err(PasswordError::Empty {
                    source_name: env_var.to_owned(),
                });
            }
            return Ok(SecretString::from(value.as_str()));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(PasswordError::NotUnicode {
                var: env_var.to_owned(),
            });
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    if may_prompt {
        return from_terminal(prompt);
    }
    Err(PasswordError::NoSource {
        env_var: env_var.to_owned(),
    })
}

/// First line of the file, without its line ending.
fn from_file(path: &Path) -> Result<SecretString, PasswordError> {
    let unreadable = |source| PasswordError::FileUnreadable {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let mode = file.metadata().map_err(unreadable)?.mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(PasswordError::FileTooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = Zeroizing::new(Vec::new());
    file.take(MAX_PASSWORD_FILE)
        .read_to_end(&mut text)
        .map_err(unreadable)?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| {
        unreadable(io::Error::new(
            io::ErrorKind::InvalidData,
            "the password is not UTF-8",
        ))
    })?;
    if line.is_empty() {
        let source_name = format!("password file {}", path.display());
        return Err(PasswordError::Empty { source_name });
    }
    Ok(SecretString::from(line))
}

/// Restores the terminal settings when dropped (also on early return).
struct EchoOff<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty, SetArg::TCSAFLUSH, &self.saved);
    }
}

/// Asks on `/dev/tty` with echo off.
fn from_terminal(prompt: &str) -> Result<SecretString, PasswordError> {
    let term = PasswordError::Terminal;
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(term)?;
    let saved = termios::tcgetattr(&tty).map_err(|e| term(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| term(e.into()))?;
    let guard = EchoOff { tty: &tty, saved };

    let mut out = &tty;
    out.write_all(prompt.as_bytes())
        .and_then(|()| out.flush())
        .map_err(term)?;
    let mut line = Zeroizing::new(String::new());
    BufReader::new(&tty).read_line(&mut line).map_err(term)?;
    drop(guard);

    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(PasswordError::Empty {
            source_name: "the terminal".to_owned(),
        });
    }
    Ok(SecretString::from(password))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use secrecy::ExposeSecret;

    use super::*;

    fn file_with(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("pw");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    const UNSET: &str = "CMX_KMS_TEST_SURELY_UNSET_VARIABLE";

    #[test]
    fn file_first_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with(dir.path(), "s3cret pw\r\nsecond line\n", 0o600);
        let pw = read_password_from(Some(&path), UNSET, "", false).unwrap();
        assert_eq!(pw.expose_secret(), "s3cret pw");
        let path = file_with(dir.path(), "only", 0o640);
        assert_eq!(
            read_password_from(Some(&path), UNSET, "", false)
                .unwrap()
                .expose_secret(),
            "only"
        );
    }

    #[test]
    fn file_problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let open = file_with(dir.path(), "pw\n", 0o644);
        let err = read_password_from(Some(&open), UNSET, "", false).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let empty = file_with(dir.path(), "\nx\n", 0o600);
        let err = read_password_from(Some(&empty), UNSET, "", false).unwrap_err();
        assert!(matches!(err, PasswordError::Empty { .. }), "{err}");
        let missing = dir.path().join("nope");
        let err = read_password_from(Some(&missing), UNSET, "", false).unwrap_err();
        assert!(matches!(err, PasswordError::FileUnreadable { .. }), "{err}");
    }

    #[test]
    fn env_then_nothing() {
        // PATH is always set: it stands in for a set variable without mutating the environment.
        let pw = read_password_from(None, "PATH", "", false).unwrap();
        assert_eq!(pw.expose_secret(), std::env::var("PATH").unwrap());
        let err = read_password_from(None, UNSET, "", false).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--password-file") && msg.contains(UNSET),
            "{msg}"
        );
    }
}
