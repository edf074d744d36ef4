//! Vault / OpenBao Transit settings (`kms.hsm.vault.*`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults as d;
use super::error::{Problem, Warning};
use super::file::ConfigFile;
use super::values::{duration, one_of};

/// How cmx-kms logs in to Vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultAuthConfig {
    /// A token: from `kms.hsm.vault.token.file`, else from the `VAULT_TOKEN` environment
    /// variable, read by the Vault backend at run time.
    Token,
    /// Azure managed identity (`kms.hsm.vault.auth.azure.*`).
    Azure {
        /// `kms.hsm.vault.auth.azure.role`: role passed at login.
        role: String,
        /// `kms.hsm.vault.auth.azure.path`: login request path.
        path: String,
        /// `kms.hsm.vault.auth.azure.resource`: resource of the Azure token request.
        resource: String,
    },
    /// AppRole (`kms.hsm.vault.auth.approle.*`).
    AppRole {
        /// `kms.hsm.vault.auth.approle.role-id`.
        role_id: String,
        /// `kms.hsm.vault.auth.approle.secret-id.file`: file holding the secret_id.
        secret_id_file: PathBuf,
        /// `kms.hsm.vault.auth.approle.path`: login request path.
        path: String,
    },
    /// TLS certificate login with the `kms.keystore.alias` identity
    /// (`kms.hsm.vault.auth.cert.*`).
    Cert {
        /// `kms.hsm.vault.auth.cert.path`: login request path.
        path: String,
        /// `kms.hsm.vault.auth.cert.role`: certificate role, or `None` to let Vault pick.
        role: Option<String>,
    },
}

/// Vault Transit settings.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// `kms.hsm.vault.namespace`: `X-Vault-Namespace` header, if any.
    pub namespace: Option<String>,
    /// `kms.hsm.vault.mount`: mount path of the Transit engine.
    pub mount: String,
    /// `kms.hsm.vault.token.file`: file holding the token (token auth).
    pub token_file: Option<PathBuf>,
    /// `kms.hsm.vault.ca.file`: PEM CA bundle for Vault's certificate; `None` means the
    /// `kms.hsm.ca.alias` keystore entry.
    pub ca_file: Option<PathBuf>,
    /// `kms.hsm.vault.auth` and its method's keys.
    pub auth: VaultAuthConfig,
    /// `kms.hsm.vault.auth.renew-before-expiry`: renew the token this long before expiry.
    pub renew_before_expiry: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Token,
    Azure,
    AppRole,
    Cert,
}

const METHODS: &[(&str, Method)] = &[
    ("token", Method::Token),
    ("azure", Method::Azure),
    ("approle", Method::AppRole),
    ("cert", Method::Cert),
];

/// Checks a login path or mount: starts with `/` (paths) and has no blanks.
fn login_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') && !text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(text.to_string())
    } else {
        Err("is not a request path (expected e.g. /v1/auth/azure/login)".into())
    }
}

fn mount(text: &str) -> Result<String, String> {
    let ok = !text.starts_with('/')
        && !text.ends_with('/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(text.to_string())
    } else {
        Err("is not a mount path (expected e.g. transit)".into())
    }
}

/// The login method's keys (`kms.hsm.vault.auth.<method>.*`); when `active`,
/// the ones the method needs are required.
fn take_auth(file: &mut ConfigFile, method: Method, active: bool) -> VaultAuthConfig {
    let azure_role = file.string("kms.hsm.vault.auth.azure.role");
    let azure_path = file.parse_or(
        "kms.hsm.vault.auth.azure.path",
        d::VAULT_AZURE_PATH.into(),
        login_path,
    );
    let azure_resource =
        file.string_or("kms.hsm.vault.auth.azure.resource", d::VAULT_AZURE_RESOURCE);
    let role_id = file.string("kms.hsm.vault.auth.approle.role-id");
    let secret_id_file = file.path("kms.hsm.vault.auth.approle.secret-id.file");
    let approle_path = file.parse_or(
        "kms.hsm.vault.auth.approle.path",
        d::VAULT_APPROLE_PATH.into(),
        login_path,
    );
    let cert_path = file.parse_or(
        "kms.hsm.vault.auth.cert.path",
        d::VAULT_CERT_PATH.into(),
        login_path,
    );
    let cert_role = file.string("kms.hsm.vault.auth.cert.role");

    let require = Required { active, method };
    match method {
        Method::Token => VaultAuthConfig::Token,
        Method::Azure => VaultAuthConfig::Azure {
            role: require.value(
                file,
                "kms.hsm.vault.auth.azure.role",
                azure_role,
                "<Vault role for Azure login>",
            ),
            path: azure_path,
            resource: azure_resource,
        },
        Method::AppRole => VaultAuthConfig::AppRole {
            role_id: require.value(
                file,
                "kms.hsm.vault.auth.approle.role-id",
                role_id,
                "<role_id>",
            ),
            secret_id_file: require.value(
                file,
                "kms.hsm.vault.auth.approle.secret-id.file",
                secret_id_file,
                "<file holding the secret_id>",
            ),
            path: approle_path,
        },
        Method::Cert => VaultAuthConfig::Cert {
            path: cert_path,
            role: cert_role,
        },
    }
}

/// The file holding the token or the AppRole secret_id must be private.
fn check_secret_files(file: &mut ConfigFile, auth: &VaultAuthConfig, token_file: Option<&PathBuf>) {
    let secret_file = match (auth, token_file) {
        (VaultAuthConfig::Token, Some(path)) => Some(("kms.hsm.vault.token.file", path)),
        (VaultAuthConfig::AppRole { secret_id_file, .. }, _) => {
            Some(("kms.hsm.vault.auth.approle.secret-id.file", secret_id_file))
        }
        _ => None,
    };
    if let Some((key, path)) = secret_file {
        check_private(file, key, path);
    }
}

impl VaultConfig {
    /// Takes every `kms.hsm.vault.*` key. `active` is `Some(true)` when the protocol is
    /// vault, `Some(false)` for another protocol (set keys then draw a warning), `None`
    /// when the protocol is invalid (then neither requirements nor warnings apply).
    pub(super) fn take(file: &mut ConfigFile, active: Option<bool>) -> Self {
        let method_key = "kms.hsm.vault.auth";
        let method = file.parse_or(method_key, Method::Token, one_of(METHODS));
        let namespace = file.string("kms.hsm.vault.namespace");
        let mount = file.parse_or("kms.hsm.vault.mount", d::VAULT_MOUNT.to_string(), mount);
        let token_file = file.path("kms.hsm.vault.token.file");
        let ca_file = file.path("kms.hsm.vault.ca.file");
        let renew_before_expiry = file.parse_or(
            "kms.hsm.vault.auth.renew-before-expiry",
            d::VAULT_RENEW_BEFORE_EXPIRY,
            duration,
        );

        let auth = take_auth(file, method, active == Some(true));
        if active == Some(true) {
            check_secret_files(file, &auth, token_file.as_ref());
        }
        let this = Self {
            namespace,
            mount,
            token_file,
            ca_file,
            auth,
            renew_before_expiry,
        };
        if let Some(active) = active {
            this.warn_unused(file, active, method);
        }
        this
    }

    /// Warns about Vault keys set in the file that have no effect.
    fn warn_unused(&self, file: &mut ConfigFile, active: bool, method: Method) {
        let used_by = |key: &str| -> bool {
            match () {
                () if key.starts_with("kms.hsm.vault.auth.azure.") => method == Method::Azure,
                () if key.starts_with("kms.hsm.vault.auth.approle.") => method == Method::AppRole,
                () if key.starts_with("kms.hsm.vault.auth.cert.") => method == Method::Cert,
                () if key == "kms.hsm.vault.token.file" => method == Method::Token,
                () => true,
            }
        };
        for spec in super::keys::KEYS
            .iter()
            .filter(|k| k.name.starts_with("kms.hsm.vault."))
        {
            if !file.is_set(spec.name) {
                continue;
            }
            let reason = if !active {
                "kms.hsm.protocol is not vault".to_string()
            } else if !used_by(spec.name) {
                format!("kms.hsm.vault.auth is {}", file_value_name(method))
            } else {
                continue;
            };
            file.warn(
                file.origin_of(spec.name),
                Some(spec.name),
                Warning::Ignored { reason },
            );
        }
    }
}

/// Refuses a secret file (Vault token, AppRole secret id) that other users can read: the
/// rule of the keystore password files (`--password-file`). A file that does not exist
/// (yet) is left to the backend, which reports it when it reads the file.
fn check_private(file: &mut ConfigFile, key: &'static str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if path.as_os_str().is_empty() {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let detail = format!(
            "{} is a directory; set {key} to the file that holds the secret",
            path.display()
        );
        file.error(
            file.origin_of(key),
            Some(key),
            Problem::NamedFile { detail },
        );
        return;
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        let problem = Problem::FileTooOpen {
            path: path.to_path_buf(),
            mode,
        };
        file.error(file.origin_of(key), Some(key), problem);
    }
}

/// Reports keys that the chosen auth method needs.
struct Required {
    active: bool,
    method: Method,
}

impl Required {
    fn value<T: Default>(
        &self,
        file: &mut ConfigFile,
        key: &'static str,
        value: Option<T>,
        hint: &str,
    ) -> T {
        if value.is_none() && self.active {
            let method_key = "kms.hsm.vault.auth";
            let because = format!("{method_key} is {}", file_value_name(self.method));
            let problem = Problem::RequiredBy {
                because,
                hint: format!("{key}={hint}"),
            };
            file.error(file.origin_of(method_key), Some(key), problem);
        }
        value.unwrap_or_default()
    }
}

fn file_value_name(method: Method) -> &'static str {
    METHODS
        .iter()
        .find(|(_, m)| *m == method)
        .map_or("?", |(name, _)| name)
}
