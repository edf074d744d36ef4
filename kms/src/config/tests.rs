use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

const MINIMAL: &str = "kms.keystore.file=kmsKeystore.jks\nkms.keystore.password=changeit\nkms.hsm.server.url=hsm.example.com\n";

fn parse(text: &str) -> Result<Loaded, ConfigErrors> {
    parse_str(text, Path::new("/etc/kms/kms.properties"), &[])
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for {text:?}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_loader_takes_exactly_the_documented_keys() {
    let mut file = ConfigFile::new(
        Path::new("/x/kms.properties"),
        properties::lex(MINIMAL),
        &[],
    );
    build(&mut file, Path::new("/x/kms.properties"));
    let taken: BTreeSet<&str> = file.taken().iter().copied().collect();
    let documented: BTreeSet<&str> = keys::KEYS.iter().map(|k| k.name).collect();
    assert_eq!(taken, documented);
}

#[test]
fn minimal_config_gets_the_defaults() {
    let loaded = parse(MINIMAL).unwrap();
    assert_eq!(loaded.warnings, vec![]);
    let c = loaded.config;
    assert_eq!(c.keystore.file, Path::new("/etc/kms/kmsKeystore.jks"));
    assert_eq!(c.keystore.password.expose_secret(), "changeit");
    assert_eq!(c.keystore.key_password().expose_secret(), "changeit");
    assert_eq!(c.keystore.alias, "kmsClient");
    assert_eq!(c.hsm.protocol, Protocol::Kmip1);
    assert_eq!(
        c.hsm.endpoints,
        vec![HsmEndpoint {
            scheme: None,
            host: "hsm.example.com".into(),
            port: 5696
        }]
    );
    assert_eq!(c.server.port, 8443);
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.workers, Workers::Automatic);
    assert_eq!(c.hsm.pool.max_lifetime, Duration::from_secs(3600));
    assert_eq!(c.hsm.soft.key_file, Path::new("/etc/kms/soft-master.key"));
    assert_eq!(c.hsm.vault.auth, VaultAuthConfig::Token);
    assert_eq!(c.cache.kind, CacheType::Local);
    assert_eq!(c.clients.role_of("CMXBACKEND1"), Some(ClientRole::Backend));
    assert_eq!(c.clients.role_of("cmxDevice"), Some(ClientRole::Device));
    assert_eq!(c.clients.role_of("kmipSigningCA"), None);
    assert!(c.metrics.enabled());
}

#[test]
fn worker_threads_are_automatic_at_zero_fixed_above_and_bounded() {
    let with = |value: &str| format!("{MINIMAL}kms.server.worker-threads={value}\n");
    let zero = parse(&with("0")).unwrap().config.server.workers;
    assert_eq!(zero, Workers::Automatic);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(zero.count(), cpus + 1);
    let three = parse(&with("3")).unwrap().config.server.workers;
    assert_eq!(three.count(), 3);
    assert!(matches!(three, Workers::Fixed(_)));
    for bad in ["1025", "-1", "two", "2.5"] {
        let errs = errors(&with(bad));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(
            errs[0].contains("kms.server.worker-threads")
                && errs[0].contains("kms.properties:4:")
                && errs[0].contains("is not a whole number from 0 to 1024"),
            "{bad}: {}",
            errs[0]
        );
    }
}

#[test]
fn the_backends_reserve_is_below_max_connections() {
    let reserved = |extra: &str| {
        parse(&format!("{MINIMAL}{extra}"))
            .unwrap()
            .config
            .server
            .backend_reserved
    };
    assert_eq!(reserved(""), 64);
    assert_eq!(
        reserved("kms.server.max-connections=100\n"),
        6,
        "a sixteenth"
    );
    assert_eq!(reserved("kms.server.backend-reserved-connections=0\n"), 0);
    let e = errors(&format!(
        "{MINIMAL}kms.server.max-connections=10\nkms.server.backend-reserved-connections=10\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("kms.server.backend-reserved-connections"),
        "{e:?}"
    );
    assert!(e[0].contains("leave none"), "{e:?}");
}

#[test]
fn debug_redacts_passwords() {
    let text = format!("{MINIMAL}kms.keystore.key-password=keypass123\n");
    let shown = format!("{:?}", parse(&text).unwrap().config);
    assert!(
        !shown.contains("changeit") && !shown.contains("keypass123"),
        "{shown}"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let text =
        "kms.keystore.file=k\nkms.keystore.pasword=hunter2\nkms.keystore.password=\\uZZZZhunter3";
    let env = [(
        "CMX_KMS_KEYSTORE_PASWORD".to_string(),
        "hunter4".to_string(),
    )];
    let e = parse_str(text, Path::new("/k.properties"), &env).unwrap_err();
    let shown = format!("{e}\n{e:?}");
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn an_environment_variable_overriding_a_line_is_warned_about() {
    let text = format!("{MINIMAL}kms.server.port=8443\n");
    let env = [("CMX_KMS_SERVER_PORT".to_string(), "9440".to_string())];
    let loaded = parse_str(&text, Path::new("/k/kms.properties"), &env).unwrap();
    assert_eq!(loaded.config.server.port, 9440);
    let shown: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "environment variable CMX_KMS_SERVER_PORT: kms.server.port: overrides line 4 of \
             /k/kms.properties, whose value is not used"
        ]
    );
    // A variable for a key the file does not set, or leaves empty for the
    // environment (as the shipped file does the password), is no override.
    let env = [
        ("CMX_KMS_SERVER_ADDRESS".to_string(), "::1".to_string()),
        ("CMX_KMS_SERVER_PORT".to_string(), "9440".to_string()),
    ];
    let text = format!("{MINIMAL}kms.server.port=\n");
    let loaded = parse_str(&text, Path::new("/k/kms.properties"), &env).unwrap();
    assert_eq!(loaded.warnings, vec![]);
}

#[test]
fn empty_values_mean_the_default_and_empty_required_values_are_errors() {
    let c = parse(&format!(
        "{MINIMAL}kms.server.port=\nkms.hsm.vault.namespace="
    ))
    .unwrap()
    .config;
    assert_eq!(c.server.port, 8443);
    assert_eq!(c.hsm.vault.namespace, None);
    assert_eq!(
        errors("kms.keystore.file=k\nkms.keystore.password=\nkms.hsm.server.url=h"),
        [
            "/etc/kms/kms.properties:2: kms.keystore.password: is empty; set it to the keystore password"
        ]
    );
}

#[test]
fn missing_required_keys_are_all_reported() {
    assert_eq!(
        errors(""),
        [
            "/etc/kms/kms.properties: kms.keystore.file: missing; add it with the keystore's path, e.g. /usr/share/kms/conf/kmsKeystore.jks",
            "/etc/kms/kms.properties: kms.keystore.password: missing; add it with the keystore password",
            "/etc/kms/kms.properties: kms.hsm.server.url: missing; add it with the HSM's address, e.g. https://kmshsm.myCorp.com (required with kms.hsm.protocol=kmip1)",
        ]
    );
}

#[test]
fn soft_needs_no_url() {
    let c = parse("kms.keystore.file=k\nkms.keystore.password=p\nkms.hsm.protocol=Soft").unwrap();
    assert_eq!(c.config.hsm.protocol, Protocol::Soft);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn vault_auth_requirements() {
    let base = "kms.keystore.file=k\nkms.keystore.password=p\nkms.hsm.server.url=https://v\nkms.hsm.protocol=vault\n";
    assert_eq!(
        errors(&format!("{base}kms.hsm.vault.auth=azure")),
        [
            "/etc/kms/kms.properties:5: kms.hsm.vault.auth.azure.role: missing, but required because kms.hsm.vault.auth is azure; add kms.hsm.vault.auth.azure.role=<Vault role for Azure login>"
        ]
    );
    assert_eq!(
        errors(&format!("{base}kms.hsm.vault.auth=approle")).len(),
        2
    );
    let c = parse(&format!("{base}kms.hsm.vault.auth=approle\nkms.hsm.vault.auth.approle.role-id=r\nkms.hsm.vault.auth.approle.secret-id.file=sid"))
        .unwrap()
        .config;
    assert_eq!(c.hsm.endpoints.first().map(|e| e.port), Some(8200));
    assert_eq!(
        c.hsm.vault.auth,
        VaultAuthConfig::AppRole {
            role_id: "r".into(),
            secret_id_file: "/etc/kms/sid".into(),
            path: "/v1/auth/approle/login".into()
        }
    );
    let loaded = parse(&format!(
        "{base}kms.hsm.vault.auth=cert\nkms.hsm.vault.auth.azure.role=x"
    ))
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.key.as_deref() == Some("kms.hsm.vault.auth.azure.role"))
    );
}

#[test]
fn cross_key_checks() {
    let e = errors(&format!("{MINIMAL}kms.clients.device.aliases=*"));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e.iter()
            .all(|l| l.contains("kms.clients.device.aliases: pattern '*' matches")),
        "{e:?}"
    );
    let e = errors(&format!("{MINIMAL}kms.clients.device.aliases=cmxbackend*"));
    assert_eq!(e.len(), 1, "{e:?}");
    let e = errors(&format!("{MINIMAL}kms.metrics.port=8443"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(parse(&format!("{MINIMAL}kms.metrics.port=0")).is_ok());
    let e = errors(&format!("{MINIMAL}kms.limits.device.burst=0"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        parse(&format!(
            "{MINIMAL}kms.limits.device.burst=0\nkms.limits.device.rate=0"
        ))
        .is_ok()
    );
}

#[test]
fn odd_keys_cannot_break_the_one_line_per_error_rule() {
    let e = parse_str(
        "k\\nx=1\n\\u0000\\r=2",
        Path::new("/k"),
        &[("CMX_KMS_A\nB".into(), "v".into())],
    )
    .unwrap_err();
    assert_eq!(e.to_string().lines().count(), e.errors.len(), "{e}");
}

#[test]
fn the_loader_never_panics_and_keeps_one_line_per_error() {
    // A deterministic mini-fuzz: fragments of real keys and lexer-significant characters.
    let pieces = [
        "kms.",
        "server.",
        "port",
        "keystore.",
        "password",
        "file",
        "hsm.",
        "protocol",
        "vault",
        "soft",
        "url",
        "kmip.server.url",
        "=",
        ":",
        " ",
        "\\",
        "\n",
        "\r\n",
        "#",
        "\\u",
        "D83D",
        "0",
        "84x3",
        "[::1]",
        ",",
        "*",
        "https://",
        "\u{e9}",
        "azure",
        "auth.",
        "10s",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..1500 {
        let mut text = String::new();
        for _ in 0..(state % 30) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(pieces[usize::try_from(state % pieces.len() as u64).unwrap()]);
        }
        if let Err(e) = parse_str(&text, Path::new("/f/kms.properties"), &[]) {
            assert_eq!(
                e.to_string().lines().count(),
                e.errors.len(),
                "{text:?}\n{e}"
            );
        }
    }
}

#[test]
fn an_invalid_protocol_does_not_cascade() {
    let text = "kms.keystore.file=k\nkms.keystore.password=p\nkms.hsm.protocol=vaultt\n\
                kms.hsm.server.url=http://vault.example.com\nkms.hsm.vault.auth=azure\n";
    let e = parse(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/kms/kms.properties:3: kms.hsm.protocol: 'vaultt' is not one of kmip1, vault, soft"
    );
    assert_eq!(e.warnings, vec![]);
    // The URL's syntax is still checked.
    let e = parse(&text.replace("http://vault.example.com", "h:84x3")).unwrap_err();
    assert_eq!(e.errors.len(), 2, "{e}");
}
