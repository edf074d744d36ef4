//! The files kms.properties names, through the real binary: `check-config`
//! finds what `serve` refuses (exit 78 for both), names the configuration
//! file, line and key and says what to do, lists every problem with a count,
//! and creates or changes nothing. `serve` never creates a soft master key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::guide_pki::GuidePki;
use support::node::{TestNode, free_port, output_text};
use support::pki;

/// A temporary folder with the guide's PKI and an empty `node` folder (the
/// folder lives as long as the guard).
fn node_folder() -> (tempfile::TempDir, GuidePki, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki(tmp.path());
    let dir = tmp.path().join("node");
    std::fs::create_dir(&dir).unwrap();
    (tmp, pki, dir)
}

/// A test node's kms.properties (soft backend, files in `dir`) with `edits`
/// applied: each key's line replaced (or removed, for an empty value), or
/// appended when the key is not there.
fn write_props(pki: &GuidePki, dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut lines: Vec<String> = TestNode::properties(pki, dir, free_port(), 0, "")
        .lines()
        .map(str::to_owned)
        .collect();
    for (key, value) in edits {
        let line = format!("{key}={value}");
        match lines.iter().position(|l| l.starts_with(&format!("{key}="))) {
            Some(i) if value.is_empty() => drop(lines.remove(i)),
            Some(i) => lines[i] = line,
            None => lines.push(line),
        }
    }
    let path = dir.join("kms.properties");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

/// `path:N: key: ` where `key` is set in the file at `path`.
fn at(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let n = text
        .lines()
        .position(|l| l.starts_with(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in {}", path.display()));
    format!("{}:{}: {key}: ", path.display(), n + 1)
}

/// Run `cmx-kms CMD -c path`; a command still running after 60 s (a serve
/// that started when it should have refused) is stopped and exits 124.
fn run(cmd: &str, path: &Path) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_cmx-kms"))
        .args([cmd, "-c"])
        .arg(path)
        .env_remove("CMX_KMS_KEYSTORE_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Both commands refuse with 78; check-config's output (with its count of
/// problems) and serve's are returned.
fn both_refuse(path: &Path) -> (String, String) {
    let check = run("check-config", path);
    let serve = run("serve", path);
    let (c, s) = (output_text(&check), output_text(&serve));
    assert_eq!(check.status.code(), Some(78), "check-config: {c}");
    assert_eq!(serve.status.code(), Some(78), "serve: {s}");
    assert!(c.contains("problem(s) found"), "{c}");
    (c, s)
}

/// Every entry of `dir` with its content, to show that nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let content = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), content)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_audit_file_is_checked_as_serve_opens_it_and_left_alone() {
    let (_tmp, pki, dir) = node_folder();
    support::node::ensure_soft_key(&write_props(&pki, &dir, &[]), &[]);
    std::fs::create_dir(dir.join("run")).unwrap();
    std::fs::write(dir.join("notes.txt"), "the operator's notes\n").unwrap();
    let cases = [
        ("missing folder", "nope/audit.log", "install -d"),
        (
            "directory",
            "run",
            "is a directory; set kms.audit.file to a file in it",
        ),
        (
            "foreign file",
            "notes.txt",
            "it is not an audit trail; move it away",
        ),
    ];
    for (what, value, hint) in cases {
        let path = write_props(
            &pki,
            &dir,
            &[("kms.audit.file", &dir.join(value).display().to_string())],
        );
        let before = snapshot(&dir);
        let (check, serve) = both_refuse(&path);
        let at = at(&path, "kms.audit.file");
        for out in [&check, &serve] {
            assert!(
                out.lines().any(|l| l.starts_with(&at) && l.contains(hint)),
                "{what}: no line {at}...{hint} in:\n{out}"
            );
        }
        assert!(check.contains("1 problem(s) found"), "{what}: {check}");
        assert_eq!(snapshot(&dir), before, "{what}: nothing created or changed");
    }
    // A new audit file in an existing folder: OK, and not made by the check.
    let path = write_props(&pki, &dir, &[]);
    let o = run("check-config", &path);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(!dir.join("audit.log").exists());
}

#[test]
fn an_audit_file_the_service_user_cannot_write_is_refused_by_both() {
    if !nix::unistd::geteuid().is_root() {
        // As a user, a read-only file stands for the service user's view.
        return read_only_audit_file_as_a_user();
    }
    // As root (which may write anything), run both commands as nobody, in
    // a folder nobody can reach (the run's TMPDIR may be private).
    let base = [
        std::env::temp_dir(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ]
    .into_iter()
    .find(|d| reachable_by_all(d));
    let Some(base) = base.filter(|_| reachable_by_all(Path::new(env!("CARGO_BIN_EXE_cmx-kms"))))
    else {
        eprintln!("skipped: no folder that user nobody can reach");
        return;
    };
    let tmp = tempfile::tempdir_in(base).unwrap();
    let pki = pki(tmp.path());
    let dir = tmp.path().join("node");
    std::fs::create_dir(&dir).unwrap();
    let path = write_props(&pki, &dir, &[]);
    support::node::ensure_soft_key(&path, &[]);
    std::fs::write(dir.join("audit.log"), "").unwrap();
    let all_read = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(all_read.success());
    for cmd in ["check-config", "serve"] {
        let o = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "timeout",
                "60",
            ])
            .arg(env!("CARGO_BIN_EXE_cmx-kms"))
            .args([cmd, "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = output_text(&o);
        assert_eq!(o.status.code(), Some(78), "{cmd}: {out}");
        let at = at(&path, "kms.audit.file");
        assert!(
            out.lines()
                .any(|l| l.starts_with(&at)
                    && l.contains("not readable and writable by user nobody")),
            "{cmd}: {out}"
        );
    }
}

/// `path` and every folder above it may be passed through by every user.
fn reachable_by_all(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn read_only_audit_file_as_a_user() {
    let (_tmp, pki, dir) = node_folder();
    let path = write_props(&pki, &dir, &[]);
    support::node::ensure_soft_key(&path, &[]);
    std::fs::write(dir.join("audit.log"), "").unwrap();
    std::fs::set_permissions(
        dir.join("audit.log"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let (check, serve) = both_refuse(&path);
    let at = at(&path, "kms.audit.file");
    both_say(&check, &serve, &at, "not readable and writable");
}

#[test]
fn serve_never_creates_the_soft_master_key() {
    let (_tmp, pki, dir) = node_folder();
    let path = write_props(&pki, &dir, &[]);
    let key = dir.join("soft-master.key");
    let (check, serve) = both_refuse(&path);
    let at = at(&path, "kms.hsm.soft.key.file");
    for out in [&check, &serve] {
        assert!(
            out.lines().any(|l| l.starts_with(&at)
                && l.contains("does not exist")
                && l.contains("cmx-kms hsm init")),
            "{out}"
        );
    }
    assert!(!key.exists(), "neither command made a key");
    assert!(
        !dir.join("audit.log").exists(),
        "serve stopped before the audit file"
    );

    // A directory in its place is named as one.
    std::fs::create_dir(&key).unwrap();
    let (check, serve) = both_refuse(&path);
    both_say(&check, &serve, &at, "is a directory");
    std::fs::remove_dir(&key).unwrap();

    // `hsm init` makes it, once; then both accept it.
    let o = Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
        .args(["hsm", "init", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let made = std::fs::read(&key).unwrap();
    let o = run("check-config", &path);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert_eq!(std::fs::read(&key).unwrap(), made);
}

#[test]
fn every_problem_is_listed_at_its_line_and_key_with_the_next_step() {
    let (_tmp, pki, dir) = node_folder();
    support::node::ensure_soft_key(&write_props(&pki, &dir, &[]), &[]);

    // An unknown key and a wrong keystore password: both, in one run.
    let path = write_props(
        &pki,
        &dir,
        &[("kms.keystore.password", "wrong"), ("kms.sever.port", "1")],
    );
    let o = run("check-config", &path);
    let out = output_text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    let unknown = at(&path, "kms.sever.port");
    let password = at(&path, "kms.keystore.password");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&unknown) && l.contains("unknown key")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&password)
            && l.contains("password is wrong")
            && l.contains("set kms.keystore.password to")),
        "{out}"
    );
    assert!(out.contains("\n2 problem(s) found"), "{out}");
    assert!(
        !out.contains("wrong\n") && !out.contains("=wrong"),
        "the password is never shown: {out}"
    );

    // The wrong password alone: serve names the line too.
    let path = write_props(&pki, &dir, &[("kms.keystore.password", "wrong")]);
    let (check, serve) = both_refuse(&path);
    let password = at(&path, "kms.keystore.password");
    both_say(&check, &serve, &password, "password is wrong");
    assert!(check.contains("1 problem(s) found"), "{check}");

    // A missing keystore.
    let nope = dir.join("nope.jks").display().to_string();
    let path = write_props(&pki, &dir, &[("kms.keystore.file", &nope)]);
    let (check, serve) = both_refuse(&path);
    let file = at(&path, "kms.keystore.file");
    both_say(&check, &serve, &file, "copy the keystore there");

    // An alias that is not in the keystore: at the key that names it.
    let path = write_props(&pki, &dir, &[("kms.server.key.alias", "tomcat")]);
    let (check, serve) = both_refuse(&path);
    let alias = at(&path, "kms.server.key.alias");
    both_say(
        &check,
        &serve,
        &alias,
        "alias 'tomcat' is not in the keystore",
    );
}

/// A cluster address that does not resolve on this host: check-config finds
/// what serve refuses, at the key's line (the installer trusts check-config
/// to say whether a node will start).
#[test]
fn an_unresolvable_cluster_address_is_refused_by_both_at_its_line() {
    let (_tmp, pki, dir) = node_folder();
    let jgroups = dir.join("jgroups.xml");
    let port = free_port();
    let xml = format!(
        "<config xmlns=\"urn:org:jgroups\">\n  <TCP bind_port=\"{port}\"/>\n  \
         <TCPPING initial_hosts=\"127.0.0.2[{port}]\" port_range=\"0\"/>\n</config>\n"
    );
    std::fs::write(&jgroups, xml).unwrap();
    let edits = [
        ("kms.cache.type", "distributed"),
        (
            "kms.distributed.cache.config.file",
            &jgroups.display().to_string(),
        ),
        ("kms.cluster.address", "kms1.nowhere.invalid"),
        ("kms.cluster.port", &port.to_string()),
    ];
    let path = write_props(&pki, &dir, &edits);
    support::node::ensure_soft_key(&path, &[]);
    let (check, serve) = both_refuse(&path);
    let at = at(&path, "kms.cluster.address");
    both_say(&check, &serve, &at, "give this node's IP address");
    assert!(check.contains("1 problem(s) found"), "{check}");
}

#[test]
fn a_client_alias_that_matches_no_entry_is_warned_about_at_its_line() {
    let (_tmp, pki, dir) = node_folder();
    let edit = [("kms.clients.device.aliases", "cmxDevice*,cmxDevcie2")];
    let path = write_props(&pki, &dir, &edit);
    support::node::ensure_soft_key(&path, &[]);
    let o = run("check-config", &path);
    let out = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "a warning, not a problem: {out}");
    let at = at(&path, "kms.clients.device.aliases");
    let said = |out: &str| {
        out.lines()
            .filter(|l| l.contains(&at) && l.contains("'cmxDevcie2' matches no certificate entry"))
            .count()
    };
    assert_eq!(said(&out), 1, "{out}");
    assert!(!out.contains("'cmxDevice*' matches no"), "{out}");
}

#[test]
fn vault_ca_and_token_files_are_checked() {
    let (_tmp, pki, dir) = node_folder();
    let token = dir.join("token");
    std::fs::write(&token, "s.0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token_text = token.display().to_string();
    let vault = |extra: &[(&'static str, String)]| {
        let mut edits: Vec<(&str, String)> = vec![
            ("kms.hsm.protocol", "vault".into()),
            ("kms.hsm.server.url", "https://127.0.0.1:9".into()),
            ("kms.hsm.vault.token.file", token_text.clone()),
        ];
        edits.extend(extra.iter().cloned());
        let edits: Vec<(&str, &str)> = edits.iter().map(|(k, v)| (*k, v.as_str())).collect();
        write_props(&pki, &dir, &edits)
    };

    let path = vault(&[("kms.hsm.vault.ca.file", "nope.pem".into())]);
    let (check, serve) = both_refuse(&path);
    let ca = at(&path, "kms.hsm.vault.ca.file");
    both_say(&check, &serve, &ca, "cannot read Vault's CA file");

    // No CA file and none in the keystore under kms.hsm.ca.alias.
    let path = vault(&[("kms.hsm.ca.alias", "nothere".into())]);
    let (check, serve) = both_refuse(&path);
    let unset = format!(
        "{}: kms.hsm.vault.ca.file: Vault is reached over https but no CA",
        path.display()
    );
    for out in [&check, &serve] {
        assert!(out.lines().any(|l| l.starts_with(&unset)), "{out}");
    }

    // The token file: missing (a problem for check-config; serve starts and
    // reads it once it is written), or a directory (not "readable by others").
    let missing = dir.join("nope.token").display().to_string();
    let path = vault(&[("kms.hsm.vault.token.file", missing)]);
    let o = run("check-config", &path);
    let out = output_text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    let at_token = at(&path, "kms.hsm.vault.token.file");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&at_token) && l.contains("does not exist")),
        "{out}"
    );
    std::fs::create_dir(dir.join("run")).unwrap();
    let path = vault(&[(
        "kms.hsm.vault.token.file",
        dir.join("run").display().to_string(),
    )]);
    let o = run("check-config", &path);
    let out = output_text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&at_token) && l.contains("is a directory")),
        "{out}"
    );
    assert!(!out.contains("readable by other users"), "{out}");

    // With the file there and the keystore's CA: OK, nothing written.
    let before = snapshot(&dir);
    let o = run("check-config", &vault(&[]));
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let after: Vec<_> = snapshot(&dir)
        .into_iter()
        .filter(|e| e.0 != "kms.properties")
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|e| e.0 != "kms.properties")
        .collect();
    assert_eq!(after, before);
}

/// Both outputs have a line at `at` (`file:line: key:`) that says `text`.
fn both_say(check: &str, serve: &str, at: &str, text: &str) {
    for out in [check, serve] {
        assert!(
            out.lines().any(|l| l.starts_with(at) && l.contains(text)),
            "no line {at}...{text} in:\n{out}"
        );
    }
}
