//! Operator functions behind `cmx-kms hsm init|rotate|check` for the KMIP
//! backend: its own reports, and [`MasterKeyAdmin`] over them.

use std::fmt;

use async_trait::async_trait;

use super::backend::KmipBackend;
use super::conn::ConnError;
use super::master_key;
use super::tls::TlsProblem;
use crate::backend::{AdminError, AdminReport, Backend, BackendError, MasterKeyAdmin};

/// What `hsm init` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitReport {
    /// The master key's name (`kms.hsm.key.name`).
    pub key_name: String,
    /// The unique identifier of the active master key.
    pub uid: String,
    /// Whether init created it (false: it existed already).
    pub created: bool,
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            write!(
                f,
                "created and activated master key {:?} at the HSM: unique identifier {}\n\
                 note: this is a NEW master key. If other nodes already use a key of this name \
                 (created by another kmsClient identity, which this node cannot see), they \
                 cannot open what this node wraps, nor this node theirs: every node must use \
                 the same kmsClient identity, and `hsm init` runs on the first node only",
                self.key_name, self.uid
            )
        } else {
            write!(
                f,
                "master key {:?} already exists and is active at the HSM: unique identifier {} \
                 (nothing changed)",
                self.key_name, self.uid
            )
        }
    }
}

/// Creates and activates the master key unless an active one exists.
///
/// Refuses (with [`BackendError::KeyNotUsable`]) when keys of that name
/// exist but none is active: that needs an operator's decision.
pub async fn init(backend: &KmipBackend) -> Result<InitReport, BackendError> {
    let name = backend.settings().key_name.clone();
    let found = backend.key_versions().await?;
    if !found.is_empty() {
        let current = master_key::choose_current(&name, &found)?;
        return Ok(InitReport {
            key_name: name,
            uid: current.uid.clone(),
            created: false,
        });
    }
    let policy = backend.settings().operation_policy_name.as_deref();
    let uid = master_key::create_active(&backend.client, &name, policy).await?;
    backend.forget_current_key();
    Ok(InitReport {
        key_name: name,
        uid,
        created: true,
    })
}

/// What `hsm rotate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateReport {
    /// The master key's name (`kms.hsm.key.name`).
    pub key_name: String,
    /// The version new wraps used before (absent if there was none).
    pub previous: Option<String>,
    /// The new current version.
    pub uid: String,
}

impl fmt::Display for RotateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "created and activated a new version of master key {:?}: unique identifier {}",
            self.key_name, self.uid
        )?;
        if let Some(p) = &self.previous {
            write!(
                f,
                "; the previous version {p} stays active so existing blobs still unwrap \
                 (rewrap them to move them to the new version)"
            )?;
        }
        Ok(())
    }
}

/// Creates and activates a new master key version under the same name.
/// Older versions stay active for unwrapping.
pub async fn rotate(backend: &KmipBackend) -> Result<RotateReport, BackendError> {
    let name = backend.settings().key_name.clone();
    let found = backend.key_versions().await?;
    let previous = master_key::choose_current(&name, &found)
        .ok()
        .map(|k| k.uid.clone());
    let policy = backend.settings().operation_policy_name.as_deref();
    let uid = master_key::create_active(&backend.client, &name, policy).await?;
    backend.forget_current_key();
    Ok(RotateReport {
        key_name: name,
        previous,
        uid,
    })
}

/// One step of `hsm check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStep {
    /// What the step checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Whether it passed but needs the operator's attention (`WARN`).
    pub warning: bool,
    /// What was found, or what is wrong and what to do about it.
    pub detail: String,
}

/// What `hsm check` found, one step per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The steps, in the order they ran.
    pub steps: Vec<CheckStep>,
    /// The TLS problem found, if any, for callers that act on it.
    pub tls_problem: Option<TlsProblem>,
    /// Whether a step failed for a configuration reason (see [`Self::is_config_problem`]).
    pub config_problem: bool,
}

impl CheckReport {
    /// Whether every step passed.
    pub fn is_ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }

    fn step(&mut self, name: impl Into<String>, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        self.steps.push(CheckStep {
            name: name.into(),
            ok,
            warning: false,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    }

    fn failed(&mut self, name: impl Into<String>, e: &BackendError) {
        self.config_problem |= e.is_config_class();
        self.step(name, Err(e.to_string()));
    }

    fn warn(&mut self, name: impl Into<String>, detail: String) {
        self.steps.push(CheckStep {
            name: name.into(),
            ok: true,
            warning: true,
            detail,
        });
    }

    /// Whether a failed step is a configuration problem (the operator must
    /// change something) rather than an HSM that cannot be reached.
    pub fn is_config_problem(&self) -> bool {
        self.config_problem
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let mark = match (s.ok, s.warning) {
                (true, false) => "ok    ",
                (true, true) => "WARN  ",
                (false, _) => "FAILED",
            };
            writeln!(f, "{mark} {}: {}", s.name, s.detail)?;
        }
        if self.is_ok() {
            write!(f, "HSM check passed")
        } else {
            write!(f, "HSM check FAILED")
        }
    }
}

/// Connects to each endpoint, negotiates, locates the master key, checks that
/// it is active and runs one encrypt/decrypt. Never fails: problems are steps.
pub async fn check(backend: &KmipBackend) -> CheckReport {
    let mut report = CheckReport::default();
    if check_endpoints(backend, &mut report).await == 0 {
        return report;
    }
    let Some(current) = check_master_key(backend, &mut report).await else {
        return report;
    };
    backend.forget_current_key();
    match backend.probe().await {
        Ok(_) => {
            report.step(
                "encrypt/decrypt",
                Ok(format!(
                    "wrapped and unwrapped a test value under {current}"
                )),
            );
        }
        Err(e) => report.failed("encrypt/decrypt", &e),
    }
    report
}

/// One step per endpoint: TLS and KMIP negotiated, or why not. How many
/// answered.
async fn check_endpoints(backend: &KmipBackend, report: &mut CheckReport) -> usize {
    let mut reachable = 0;
    for ep in backend.client.check_endpoints().await {
        let result = match ep.result {
            Ok((version, vendor)) => {
                reachable += 1;
                let vendor = vendor.map_or(String::new(), |v| format!(", server {v:?}"));
                Ok(format!("TLS and KMIP {version} negotiated{vendor}"))
            }
            Err(e) => {
                report.config_problem |= e.is_config();
                match e {
                    ConnError::Tls { problem, message } => {
                        report.tls_problem.get_or_insert(problem);
                        Err(message)
                    }
                    e @ (ConnError::Connect(_)
                    | ConnError::ConnectTimeout(_)
                    | ConnError::HandshakeTimeout(_)) => Err(format!(
                        "{e}: check that the HSM runs and that kms.hsm.server.url/port point at it"
                    )),
                    e => Err(e.to_string()),
                }
            }
        };
        report.step(format!("connect {}", ep.endpoint), result);
    }
    reachable
}

/// The master key's versions located, the current one active and of the
/// right kind, a warning for each other version that deserves a look; the
/// current version's id, or `None` after a failed step.
async fn check_master_key(backend: &KmipBackend, report: &mut CheckReport) -> Option<String> {
    let name = backend.settings().key_name.clone();
    let found = match backend.key_versions().await {
        Ok(found) => found,
        Err(e) => {
            report.failed(format!("locate master key {name:?}"), &e);
            return None;
        }
    };
    if found.is_empty() {
        report.failed(
            format!("locate master key {name:?}"),
            &master_key::no_master_key(&name),
        );
        return None;
    }
    let list: Vec<String> = found.iter().map(master_key::KeyInfo::describe).collect();
    report.step(
        format!("locate master key {name:?}"),
        Ok(format!("found {}", list.join(", "))),
    );
    let current = match master_key::choose_current(&name, &found) {
        Ok(k) => {
            report.step(
                "master key active",
                Ok(format!("current version {} ({})", k.uid, k.kind_name())),
            );
            k.uid.clone()
        }
        Err(e) => {
            report.failed("master key active", &e);
            return None;
        }
    };
    // Versions other than the current one that deserve a look: a version
    // that is not active (its blobs may no longer open), one of the wrong kind.
    for k in found.iter().filter(|k| k.uid != current) {
        if !k.is_active() {
            let advice = master_key::state_advice(&k.uid, k.attributes.state, true);
            report.warn(format!("version {}", k.uid), advice);
        } else if !k.is_aes256() {
            report.warn(
                format!("version {}", k.uid),
                format!(
                    "version {} is {}: no new wraps use it; rewrap the blobs under it, then \
                     revoke it",
                    k.uid,
                    k.kind_name()
                ),
            );
        }
    }
    Some(current)
}

/// Revokes one master key version (reason: cessation of operation). Blobs
/// wrapped under it no longer unwrap: rewrap them first.
pub async fn revoke_version(backend: &KmipBackend, uid: &str) -> Result<(), BackendError> {
    master_key::revoke(&backend.client, uid).await?;
    backend.forget_current_key();
    Ok(())
}

/// Destroys one master key version that is no longer active (revoke it
/// first). Blobs wrapped under it are lost for good.
pub async fn destroy_version(backend: &KmipBackend, uid: &str) -> Result<(), BackendError> {
    master_key::destroy(&backend.client, uid).await?;
    backend.forget_current_key();
    Ok(())
}

#[async_trait]
impl MasterKeyAdmin for KmipBackend {
    async fn init(&self) -> Result<AdminReport, AdminError> {
        Ok(AdminReport::done(init(self).await?))
    }

    async fn check(&self) -> Result<AdminReport, AdminError> {
        let r = check(self).await;
        Ok(AdminReport {
            passed: r.is_ok(),
            text: r.to_string(),
            config_problem: r.config_problem,
        })
    }

    async fn rotate(&self) -> Result<AdminReport, AdminError> {
        Ok(AdminReport::done(rotate(self).await?))
    }
}
