//! A cmx-kms node over a real PyKMIP HSM, with the guide's PKI: shared by
//! the tests that drive the `kmip1` backend through the HTTPS API. Include
//! with `#[path = "support/kmip_node.rs"] mod kmip_node;` beside `mod pykmip`
//! and `mod support`.
#![allow(dead_code)]

use std::path::Path;

use crate::pykmip;
use crate::support::guide_pki::{GuidePki, PkiOptions};
use crate::support::node::TestNode;

/// The guide's PKI, plus PyKMIP's view of it: its server certificate and the
/// HSM CA (`kmipSigningCA`) that signed the `kmsClient` identity.
pub fn setup(dir: &Path) -> (GuidePki, pykmip::PyKmip) {
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    let pki = GuidePki::generate(&dir.join("pki"), PkiOptions::default());
    let hsm_dir = dir.join("hsm-pki");
    std::fs::create_dir_all(&hsm_dir).unwrap();
    for (from, to) in [
        (&pki.hsm_ca.cert, "hsm-ca.crt"),
        (&pki.hsm_server.cert, "server-ec.crt"),
        (&pki.hsm_server.key, "server-ec.key"),
    ] {
        std::fs::copy(from, hsm_dir.join(to)).unwrap();
    }
    let hsm = pykmip::PyKmip::start(
        &pykmip::Pki { dir: hsm_dir },
        &dir.join("pykmip"),
        "server-ec",
    );
    (pki, hsm)
}

/// Properties of a `kmip1` node on `port`/`mport` with master key
/// `cmx-api-master` at the PyKMIP on `hsm_port`; `extra` lines are appended.
pub fn props(
    pki: &GuidePki,
    node_dir: &Path,
    hsm_port: u16,
    port: u16,
    mport: u16,
    extra: &str,
) -> String {
    let base = TestNode::properties(pki, node_dir, port, mport, "");
    base.replace("kms.hsm.protocol=soft\n", "")
        + &format!(
            "kms.hsm.protocol=kmip1\nkms.hsm.server.url=127.0.0.1\nkms.hsm.server.port={hsm_port}\n\
             kms.hsm.key.name=cmx-api-master\nkms.hsm.request-timeout=2s\nkms.hsm.connect-timeout=2s\n\
             {extra}"
        )
}
