//! `cmx-kms cluster status`: the cluster as the running node sees it, through
//! its control socket. Prints for people.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use serde_json::json;

use super::CommandError;
use super::cache::ask_node;

/// `cmx-kms cluster status`: members, reachable or not and why, the owner
/// split, and the kmsserver fingerprints.
pub fn status(config: &Path) -> Result<(), CommandError> {
    let a = ask_node(config, &json!({"op": "status"}))?;
    if a["cluster"] != "on" {
        println!(
            "cluster: {} ({} keys cached)",
            a["cluster"].as_str().unwrap_or("?"),
            a["cache_entries"]
        );
        return Ok(());
    }
    println!(
        "this node: {}  kmsserver {}",
        a["this_node"].as_str().unwrap_or("?"),
        a["kmsserver"].as_str().unwrap_or("?")
    );
    println!("cached customer keys: {}", a["cache_entries"]);
    println!("members:");
    for m in a["members"].as_array().into_iter().flatten() {
        println!(
            "  {:<32} {}",
            m["node"].as_str().unwrap_or("?"),
            m["detail"].as_str().unwrap_or("?")
        );
    }
    println!("owner split (this node's view):");
    let owners: Vec<&serde_json::Value> =
        a["owner_split"].as_array().into_iter().flatten().collect();
    let shares: Vec<f64> = owners
        .iter()
        .map(|o| o["share"].as_f64().unwrap_or(0.0))
        .collect();
    for (o, pct) in owners.iter().zip(percents(&shares)) {
        println!("  {:<32} {pct}%", o["node"].as_str().unwrap_or("?"));
    }
    Ok(())
}

/// Whole percents of `shares` that add up to 100 (largest remainders get
/// the rounding), so three equal owners read 34 + 33 + 33, not 34 + 33 + 34.
/// All zero when the shares are.
fn percents(shares: &[f64]) -> Vec<u64> {
    let total: f64 = shares.iter().filter(|s| s.is_finite() && **s > 0.0).sum();
    if total <= 0.0 {
        return vec![0; shares.len()];
    }
    let exact: Vec<f64> = shares
        .iter()
        .map(|s| {
            if s.is_finite() && *s > 0.0 {
                s / total * 100.0
            } else {
                0.0
            }
        })
        .collect();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0..=100
    let mut out: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&x, &y| (exact[y] - exact[y].floor()).total_cmp(&(exact[x] - exact[x].floor())));
    let short = 100u64.saturating_sub(out.iter().sum());
    for &i in order
        .iter()
        .cycle()
        .take(usize::try_from(short).unwrap_or(0))
    {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percents;

    #[test]
    fn the_owner_split_adds_up_to_100() {
        let third = 1.0 / 3.0;
        let got = percents(&[0.335, 0.33, 0.335]);
        assert_eq!(got.iter().sum::<u64>(), 100, "{got:?}");
        assert_eq!(percents(&[third, third, third]).iter().sum::<u64>(), 100);
        assert_eq!(percents(&[0.5, 0.5]), [50, 50]);
        assert_eq!(percents(&[1.0]), [100]);
        assert_eq!(percents(&[0.0, 0.0]), [0, 0]);
        assert_eq!(percents(&[]), Vec::<u64>::new());
    }
}
