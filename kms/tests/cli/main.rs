//! The `cmx-kms` command line as an operator uses it: `check-config` and
//! `dev` here, `keystore list` and `keystore convert-legacy` in [`keystore`],
//! on files made by real keytool and openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod keystore;

use std::path::Path;
use std::process::{Command, Output};

use support::KillOnDrop;
use support::guide_pki::{GuidePki, PkiOptions, StoreType};
use support::node::output_text;

fn cmx(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cmx-kms"));
    c.args(args).env_remove("CMX_KMS_KEYSTORE_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Write a password file as an operator must: readable by its owner only.
fn password_file(path: &Path, password: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn pki(dir: &Path, store_type: StoreType) -> GuidePki {
    std::fs::create_dir_all(dir).unwrap();
    GuidePki::generate(
        dir,
        PkiOptions {
            store_type,
            ..PkiOptions::default()
        },
    )
}

/// kms.properties as the guide's examples write it (KMIP flavour), with the
/// audit file in the test's folder (check-config checks that it can be made).
fn guide_properties(pki: &GuidePki) -> String {
    format!(
        "kms.keystore.file={}\nkms.keystore.password={}\nkms.keystore.alias=kmsClient\n\
         kms.hsm.server.url=https://kmshsm.myCorp.com\nkms.hsm.server.port=5696\n\
         kms.distributed.cache.config.file=/usr/share/kms/conf/jgroups.xml\nkms.cache.type=none\n\
         kms.audit.file={}\n",
        pki.keystore.display(),
        pki.store_password,
        pki.dir.join("audit.log").display()
    )
}

#[test]
fn check_config_accepts_the_guide_and_names_line_and_key_of_each_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), StoreType::DefaultPkcs12);
    let good = guide_properties(&pki);
    let path = dir.path().join("kms.properties");
    std::fs::write(&path, &good).unwrap();
    let o = cmx(&["check-config", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(output_text(&o).contains("configuration OK"));

    let cases = [
        ("unknown key", "kms.sever.port=8443\n", "kms.sever.port"),
        (
            "duplicate key",
            "kms.keystore.alias=kmsClient\n",
            "kms.keystore.alias",
        ),
        ("bad port", "kms.server.port=84x3\n", "kms.server.port"),
        (
            "legacy and new URLs disagree",
            "kmip.server.url=other-hsm.myCorp.com\n",
            "kmip.server.url",
        ),
    ];
    let lines = good.lines().count();
    for (what, extra, key) in cases {
        std::fs::write(&path, format!("{good}{extra}")).unwrap();
        let o = cmx(&["check-config", "-c", path.to_str().unwrap()], &[]);
        let out = output_text(&o);
        assert_eq!(o.status.code(), Some(78), "{what}: {out}");
        // The line is named as the problem's location or, for a conflict
        // between two lines, in the message itself.
        let n = lines + 1;
        let at = format!("{}:{n}:", path.display());
        let named =
            |l: &&str| (l.contains(&at) || l.contains(&format!("line {n}"))) && l.contains(key);
        assert!(
            out.lines().any(|l| named(&l)),
            "{what}: line {n} and {key} not named in:\n{out}"
        );
    }

    // The keystore side: a wrong password and a missing alias are named too.
    std::fs::write(
        &path,
        good.replace(
            &format!("password={}", pki.store_password),
            "password=wrong",
        ),
    )
    .unwrap();
    let o = cmx(&["check-config", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        output_text(&o).contains("password is wrong"),
        "{}",
        output_text(&o)
    );
    std::fs::write(&path, format!("{good}kms.server.key.alias=tomcat\n")).unwrap();
    let o = cmx(&["check-config", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(78));
    let out = output_text(&o);
    assert!(
        out.contains("kms.server.key.alias=tomcat") && out.contains("kmsserver"),
        "{out}"
    );

    // Warnings, each once with its place: a stray backslash that joins the
    // next setting into a value, and a variable that overrides a line.
    let stray = good.replace(
        "kms.cache.type=none\n",
        "kms.cache.type=none\\\nkms.server.port=8443\n",
    );
    std::fs::write(&path, stray).unwrap();
    let o = cmx(
        &["check-config", "-c", path.to_str().unwrap()],
        &[("CMX_KMS_KEYSTORE_ALIAS", "kmsClient")],
    );
    let out = output_text(&o);
    let once = |what: &str| out.matches(what).count() == 1;
    assert!(
        once("which joins line 8 (itself a setting)")
            && once("CMX_KMS_KEYSTORE_ALIAS: kms.keystore.alias: overrides line 3"),
        "{out}"
    );
}

#[test]
fn the_curl_commands_printed_by_dev_work_as_printed() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = support::node::free_port_pair();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .args(["dev", "--dir"])
            .arg(dir.path().join("dev"))
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The banner, a blank line, then the commands up to the next blank line.
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut script = String::new();
    let mut seen_blank = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.is_empty() {
            if seen_blank && !script.is_empty() {
                break;
            }
            seen_blank = true;
            continue;
        }
        if seen_blank {
            script.push_str(&line);
            script.push('\n');
        }
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    drop(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: script\n{script}\nprinted\n{}", output_text(&out)));
    let key = v["workspace_key"].as_str().expect("a workspace key");
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
            .unwrap()
            .len(),
        32
    );
    assert!(
        script.contains("--cert-type P12"),
        "the device uses its .p12, as agents do"
    );
}

#[test]
fn the_server_process_is_not_dumpable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Key material must never reach a core dump. The kernel shows whether a
    // process is dumpable in the owner of its /proc entries: those of a
    // non-dumpable process belong to root even when it runs as another user.
    // So run the node as `nobody` (this needs root, as CI is) and look.
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test runs the node as nobody: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = support::node::free_port_pair();
    let mut child = KillOnDrop(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_cmx-kms"))
            .args(["dev", "--dir"])
            .arg(dir.path().join("dev"))
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Generous: the first start makes a PKI, slow on a loaded machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.0.try_wait().unwrap().is_none(), "the dev node exited");
        assert!(
            std::time::Instant::now() < deadline,
            "dev node did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let environ = std::fs::metadata(format!("/proc/{}/environ", child.0.id())).unwrap();
    drop(child);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "runs as nobody: {status}"
    );
    assert_eq!(
        environ.uid(),
        0,
        "/proc/PID/environ of a non-dumpable process belongs to root"
    );
    // And no transparent huge pages (cli::main): with them the allocator's
    // heap was resident in whole 2 MiB pages.
    assert!(
        status.lines().any(|l| l == "THP_enabled:\t0"),
        "transparent huge pages are off for the server: {status}"
    );
}

#[test]
fn a_dev_node_keeps_its_control_socket_in_its_folder() {
    // The service's /run/cmx-kms exists only under the packaged unit: a dev
    // node used to warn that it could not make its socket there, and
    // `cmx-kms cache flush` could not reach it.
    let dir = tempfile::tempdir().unwrap();
    let port = support::node::free_port_pair();
    let err_path = dir.path().join("dev.err");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .args(["dev", "--dir"])
            .arg(dir.path().join("dev"))
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let config = dir.path().join("dev/kms.properties");
    // Generous: the first start makes a PKI, slow on a loaded machine. The
    // flush is retried until the node has bound its socket.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let flushed = loop {
        assert!(child.0.try_wait().unwrap().is_none(), "the dev node exited");
        let out = support::node::cmx_with_config(&["cache", "flush"], &config);
        if out.status.success() {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cache flush never reached the dev node: {}",
            output_text(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let in_folder = dir.path().join("dev/run/control.sock").exists();
    drop(child);
    let report = String::from_utf8_lossy(&flushed.stdout);
    assert!(
        report.contains("flush generation") && report.contains("\n  this node: acknowledged"),
        "{}",
        output_text(&flushed)
    );
    assert!(in_folder, "the socket is in the dev folder");
    let log = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("control socket")),
        "no warning about the control socket:\n{log}"
    );
}
