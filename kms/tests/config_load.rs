//! Loading `kms.properties` files from disk: the guide's examples, legacy keys, every
//! error reported with file, line and key, environment overrides, encodings, paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmx_kms::config::{
    self, CacheType, ConfigErrors, HsmEndpoint, Loaded, Origin, Problem, Protocol, VaultAuthConfig,
    Warning,
};
use secrecy::ExposeSecret;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/properties")
        .join(name)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_ok(path: &Path, env: &[(String, String)]) -> Loaded {
    match config::load(path, env) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("{} should load, got:\n{errors}", path.display()),
    }
}

fn load_err(path: &Path, env: &[(String, String)]) -> ConfigErrors {
    match config::load(path, env) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(errors) => errors,
    }
}

/// Writes `text` as `kms.properties` in a fresh directory with mode 0640.
fn write_conf(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kms.properties");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    (dir, path)
}

#[test]
fn the_guides_vault_example_loads() {
    // A guide node also has jgroups.xml (at the default path, which this
    // machine lacks) and -Djgroups.tcp.address in setenv.sh.
    let jgroups = testdata("guide-jgroups.xml");
    let env = env(&[
        ("CMX_KMS_CLUSTER_ADDRESS", "127.0.0.1"),
        (
            "CMX_KMS_DISTRIBUTED_CACHE_CONFIG_FILE",
            jgroups.to_str().unwrap(),
        ),
    ]);
    let loaded = load_ok(&testdata("guide-vault.properties"), &env);
    // The one warning about a key is the test's own override of the guide's
    // jgroups.xml path, named with its line.
    let keyed: Vec<String> = loaded
        .warnings
        .iter()
        .filter(|w| w.key.is_some())
        .map(ToString::to_string)
        .collect();
    assert_eq!(keyed.len(), 1, "{keyed:?}");
    assert!(
        keyed[0].starts_with(
            "environment variable CMX_KMS_DISTRIBUTED_CACHE_CONFIG_FILE: \
             kms.distributed.cache.config.file: overrides line 14 of"
        ),
        "{keyed:?}"
    );
    let c = loaded.config;
    assert_eq!(
        c.keystore.file,
        Path::new("/usr/share/kms/conf/kmsKeystore.jks")
    );
    assert_eq!(c.keystore.password.expose_secret(), "0123456");
    assert_eq!(c.keystore.alias, "kmsClient");
    assert_eq!(c.hsm.protocol, Protocol::Vault);
    assert_eq!(
        c.hsm.endpoints,
        vec![HsmEndpoint {
            scheme: Some("https".into()),
            host: "kmshsm.mycorp.com".into(),
            port: 8200
        }]
    );
    assert_eq!(c.hsm.vault.namespace.as_deref(), Some("engineering"));
    assert_eq!(c.hsm.vault.renew_before_expiry, Duration::from_secs(35));
    assert_eq!(
        c.hsm.vault.auth,
        VaultAuthConfig::Azure {
            role: "KMS_ADMIN".into(),
            path: "/v1/auth/azure/login".into(),
            resource: "https://management.azure.com".into(),
        }
    );
    assert_eq!(c.cache.kind, CacheType::Distributed);
    assert_eq!(c.cache.distributed_config_file, jgroups);
    let cluster = c.cache.cluster.expect("distributed: the cluster is on");
    assert_eq!(
        (cluster.address.as_str(), cluster.port),
        ("127.0.0.1", 7800)
    );
    assert_eq!(cluster.hosts.len(), 3);
}

#[test]
fn legacy_kmip_keys_load_with_deprecation_warnings() {
    let path = testdata("legacy-kmip.properties");
    let loaded = load_ok(&path, &[]);
    let deprecated: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| matches!(w.warning, Warning::Deprecated { .. }))
        .map(ToString::to_string)
        .collect();
    let file = path.display();
    assert_eq!(
        deprecated,
        [
            format!("{file}:4: kmip.server.url: deprecated; rename it to kms.hsm.server.url"),
            format!("{file}:5: kmip.server.port: deprecated; rename it to kms.hsm.server.port"),
        ]
    );
    let c = loaded.config;
    assert_eq!(c.hsm.protocol, Protocol::Kmip1);
    assert_eq!(
        c.hsm
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["kmshsm.mycorp.com:5696"]
    );
    // Relative to the file's directory.
    assert_eq!(c.keystore.file, testdata("kmsKeystore.jks"));
}

#[test]
fn every_error_is_reported_with_file_line_and_key() {
    let path = testdata("errors.properties");
    let errors = load_err(&path, &[]);
    let file = path.display();
    assert_eq!(errors.to_string(), [
        format!("{file}:4: kms.server.port: '84x3' is not a port number (expected 1-65535)"),
        format!(
            "{file}:5: kms.sever.address: unknown key (did you mean kms.server.address?); fix the spelling or remove the line"
        ),
        format!("{file}:6: kms.keystore.password: set again here, first set on line 3; keep only one of the two lines"),
        format!(
            "{file}:8: kms.hsm.server.url: 'hsm-b.example.com' disagrees with kmip.server.url = 'hsm-a.example.com' on line 7; remove the legacy kmip.server.url line"
        ),
    ]
    .join("\n"));
    // The same, as data.
    let lines: Vec<_> = errors
        .errors
        .iter()
        .map(|e| match &e.origin {
            Origin::File { line, .. } => (*line, e.key.clone().unwrap_or_default()),
            Origin::Env { .. } => panic!("no environment here"),
        })
        .collect();
    assert_eq!(
        lines,
        [
            (Some(4), "kms.server.port".to_string()),
            (Some(5), "kms.sever.address".to_string()),
            (Some(6), "kms.keystore.password".to_string()),
            (Some(8), "kms.hsm.server.url".to_string()),
        ]
    );
    assert!(matches!(
        errors.errors.first().map(|e| &e.problem),
        Some(Problem::Invalid { .. })
    ));
}

#[test]
fn environment_overrides_the_file_and_keeps_strings_intact() {
    let (_dir, path) = write_conf(
        b"kms.keystore.file=ks.p12\nkms.keystore.password=fromfile\nkms.hsm.protocol=soft\n",
    );
    let vars = env(&[
        ("CMX_KMS_KEYSTORE_PASSWORD", "0123456"),
        ("CMX_KMS_SERVER_PORT", "9443"),
        ("CMX_KMS_METRICS_PORT", "0"),
        ("CMX_KMS_LOG", "debug"),
        ("CMX_KMS_TESTBED", "/tmp/tb"),
        ("PATH", "/usr/bin"),
        ("cmx_kms_server_port", "1"),
    ]);
    let loaded = load_ok(&path, &vars);
    assert_eq!(loaded.config.keystore.password.expose_secret(), "0123456");
    assert_eq!(loaded.config.server.port, 9443);
    assert!(!loaded.config.metrics.enabled());
}

#[test]
fn bad_and_unknown_environment_variables_are_errors() {
    let (_dir, path) =
        write_conf(b"kms.keystore.file=ks.p12\nkms.keystore.password=p\nkms.hsm.protocol=soft\n");
    let vars = env(&[
        ("CMX_KMS_SERVER_PORT", "84x3"),
        ("CMX_KMS_SERVER_PROT", "1"),
        ("CMX_KMS_KMIP_SERVER_URL", "h"),
    ]);
    let shown = load_err(&path, &vars).to_string();
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        [
            "environment variable CMX_KMS_SERVER_PROT: does not name a configuration key (did you mean CMX_KMS_SERVER_PORT?); fix the name or unset the variable",
            "environment variable CMX_KMS_KMIP_SERVER_URL: does not name a configuration key (did you mean CMX_KMS_HSM_SERVER_URL?); fix the name or unset the variable",
            "environment variable CMX_KMS_SERVER_PORT: kms.server.port: '84x3' is not a port number (expected 1-65535)",
        ]
    );
}

#[test]
fn environment_wins_over_legacy_and_new_keys_in_the_file() {
    let (_dir, path) = write_conf(
        b"kms.keystore.file=k\nkms.keystore.password=p\nkmip.server.url=a\nkms.hsm.server.url=b\n",
    );
    let loaded = load_ok(&path, &env(&[("CMX_KMS_HSM_SERVER_URL", "c:1")]));
    assert_eq!(
        loaded
            .config
            .hsm
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["c:1"]
    );
}

#[test]
fn agreeing_legacy_and_new_keys_are_fine() {
    let (_dir, path) = write_conf(
        b"kms.keystore.file=k\nkms.keystore.password=p\nkmip.server.port=5697\nkms.hsm.server.port=5697\nkms.hsm.server.url=h\n",
    );
    let loaded = load_ok(&path, &[]);
    assert_eq!(
        loaded.config.hsm.endpoints.first().map(|e| e.port),
        Some(5697)
    );
}

#[test]
fn latin1_file_is_read_with_a_warning() {
    let path = testdata("latin1.properties");
    let loaded = load_ok(&path, &[]);
    assert_eq!(loaded.config.keystore.password.expose_secret(), "caf\u{e9}");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.warning == Warning::Latin1 { line: 2 }),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn trailing_whitespace_in_a_password_is_kept_and_warned_about() {
    let (_dir, path) =
        write_conf(b"kms.keystore.file=k\nkms.keystore.password=secret \nkms.hsm.protocol=soft\n");
    let loaded = load_ok(&path, &[]);
    assert_eq!(loaded.config.keystore.password.expose_secret(), "secret ");
    let shown: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().any(|w| w.starts_with(&format!(
            "{}:2: kms.keystore.password: the value ends with whitespace",
            path.display()
        ))),
        "{shown:?}"
    );
}

#[test]
fn unreadable_oversized_and_world_readable_files() {
    let missing = Path::new("/nonexistent/kms.properties");
    let shown = load_err(missing, &[]).to_string();
    assert!(
        shown.starts_with("/nonexistent/kms.properties: cannot read the configuration file ("),
        "{shown}"
    );

    let (_dir, path) = write_conf(&vec![b'#'; config::properties::MAX_FILE_BYTES + 1]);
    let errors = load_err(&path, &[]);
    assert!(
        matches!(errors.errors.as_slice(), [e] if matches!(e.problem, Problem::TooLarge { .. }))
    );

    let (_dir, path) =
        write_conf(b"kms.keystore.file=k\nkms.keystore.password=p\nkms.hsm.protocol=soft\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = load_ok(&path, &[]);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains("readable by every user")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let (dir, path) = write_conf(
        b"kms.keystore.file=sub/ks.jks\nkms.keystore.password=p\nkms.hsm.protocol=soft\nkms.audit.file=audit.log\nkms.hsm.vault.ca.file=/etc/ca.pem\n",
    );
    let c = load_ok(&path, &[]).config;
    assert_eq!(c.keystore.file, dir.path().join("sub/ks.jks"));
    assert_eq!(c.audit.file, dir.path().join("audit.log"));
    assert_eq!(c.hsm.soft.key_file, dir.path().join("soft-master.key"));
    assert_eq!(
        c.hsm.vault.ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(c.source, path);
}
