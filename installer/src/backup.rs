//! The configuration backups `/usr/share/kms/conf-orig`, `conf-orig.1`,
//! `conf-orig.2`, ... (the guide's `cp -r conf conf-orig`, then one per
//! upgrade, rollback or migration): listing them in order, keeping them
//! private and pruning the oldest.
//!
//! Kept: the [`KEEP_CONF_BACKUPS`] newest, plus every backup a plan still
//! needs (the one a rollback restores). The legacy backups in
//! `/var/backups/cmx-kms/legacy-*` and `uninstall-*` are never pruned.

use std::fs;

use crate::InstallError;
use crate::paths::{self, Root};
use crate::safefs;

/// How many `conf-orig*` backups are kept (the newest ones).
pub const KEEP_CONF_BACKUPS: usize = 5;

/// The number of a backup's file name: `conf-orig` is 0, `conf-orig.N` is N.
pub fn number(file_name: &str) -> Option<u32> {
    let base = paths::CONF_ORIG.rsplit('/').next().unwrap_or("conf-orig");
    let rest = file_name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(0);
    }
    let n = rest.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return None;
    }
    n.parse().ok()
}

/// The existing `conf-orig*` directories, oldest first: (number, node path).
pub fn conf_backups(root: &Root) -> Vec<(u32, String)> {
    let Ok(rd) = fs::read_dir(root.path(paths::APP_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            number(&name).map(|n| (n, format!("{}/{name}", paths::APP_DIR)))
        })
        .collect();
    out.sort();
    out
}

/// Which of `backups` (oldest first) to remove so that the `keep` newest
/// and every `protected` one stay.
pub fn to_prune<'a>(backups: &'a [(u32, String)], keep: usize, protected: &[&str]) -> Vec<&'a str> {
    let cut = backups.len().saturating_sub(keep);
    backups
        .get(..cut)
        .unwrap_or_default()
        .iter()
        .map(|(_, p)| p.as_str())
        .filter(|p| !protected.contains(p))
        .collect()
}

/// After a new backup: remove the oldest beyond [`KEEP_CONF_BACKUPS`]
/// (never a `protected` one), and make every kept one private (`root:root`,
/// `0700` / `0600`: backups made by earlier versions kept the legacy modes).
/// Returns the node paths removed.
pub fn prune_and_tighten(root: &Root, protected: &[&str]) -> Result<Vec<String>, InstallError> {
    let all = conf_backups(root);
    let removed: Vec<String> = to_prune(&all, KEEP_CONF_BACKUPS, protected)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for node in &removed {
        let host = root.path(node);
        // remove_dir_all does not follow links (it works below an open directory).
        fs::remove_dir_all(&host).map_err(InstallError::io("remove", &host))?;
    }
    for (_, node) in all.iter().filter(|(_, p)| !removed.contains(p)) {
        safefs::make_private(&root.path(node))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("conf-orig"), Some(0));
        assert_eq!(number("conf-orig.1"), Some(1));
        assert_eq!(number("conf-orig.12"), Some(12));
        for bad in [
            "conf",
            "conf-orig.",
            "conf-orig.01",
            "conf-orig.x",
            "conf-orig1",
        ] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }

    #[test]
    fn prunes_the_oldest_but_not_the_protected() {
        let all: Vec<(u32, String)> = (0..8).map(|n| (n, format!("b{n}"))).collect();
        assert_eq!(to_prune(&all, 5, &[]), ["b0", "b1", "b2"]);
        assert_eq!(to_prune(&all, 5, &["b1"]), ["b0", "b2"]);
        assert!(to_prune(&all, 8, &[]).is_empty());
        assert!(to_prune(&all[..3], 5, &[]).is_empty());
    }
}
