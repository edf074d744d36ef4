//! `cmx-kms keystore list` (what `keytool -list [-v]` shows, for JKS and
//! PKCS#12 alike) and `cmx-kms keystore convert-legacy` (a legacy RC2/3DES
//! `.p12` into one OpenSSL 3 reads without `-legacy`).

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use secrecy::SecretString;

use super::CommandError;
use crate::keystore::KeyStore;

/// A password from `file`, else `CMX_KMS_KEYSTORE_PASSWORD`, else a prompt.
fn password(file: Option<&Path>, what: &str) -> Result<SecretString, CommandError> {
    crate::keystore::password::read_password(file, "CMX_KMS_KEYSTORE_PASSWORD", what)
        .map_err(|e| CommandError::Usage(e.to_string()))
}

/// `cmx-kms keystore list PATH [-v]`.
pub fn list(path: &Path, verbose: bool, password_file: Option<&Path>) -> Result<(), CommandError> {
    let pw = password(password_file, "Enter keystore password: ")?;
    let ks = KeyStore::load(path, &pw, None)
        .map_err(|e| CommandError::Data(format!("{}: {e}", path.display())))?;
    print!("{}", crate::keystore::list::render(&ks, verbose));
    Ok(())
}

/// `cmx-kms keystore convert-legacy IN OUT`.
pub fn convert_legacy(
    input: &Path,
    output: &Path,
    pw_file: Option<&Path>,
    out_pw_file: Option<&Path>,
) -> Result<(), CommandError> {
    let in_pw = password(pw_file, "Enter the password of the legacy .p12: ")?;
    let out_pw = match out_pw_file {
        Some(f) => password(Some(f), "")?,
        None => in_pw.clone(),
    };
    let data = std::fs::read(input)
        .map_err(|e| CommandError::Io(format!("cannot read {}: {e}", input.display())))?;
    let out = crate::keystore::convert::convert_legacy(&data, &in_pw, &out_pw)
        .map_err(|e| CommandError::Data(format!("{}: {e}", input.display())))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &out))
        .map_err(|e| {
            CommandError::Io(format!(
                "cannot write {}: {e} (the output file must not exist yet)",
                output.display()
            ))
        })?;
    println!("wrote {} (PBES2/AES-256, SHA-256 MAC)", output.display());
    Ok(())
}
