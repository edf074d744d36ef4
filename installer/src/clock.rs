//! Time stamps the installer writes: `2025-05-20T13:45:12Z` in the install
//! log, and a compact `20250520T134512Z` in the names of files it moves aside
//! or backs up. UTC always, from the system clock; no time zone database.

use std::time::{SystemTime, UNIX_EPOCH};

use cmx_kms::time::civil_from_days;

/// `2025-05-20T13:45:12Z` for `t`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A compact `20250520T134512Z` for file names.
pub fn stamp(t: SystemTime) -> String {
    timestamp(t).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_747_748_712);
        assert_eq!(timestamp(t), "2025-05-20T13:45:12Z");
        assert_eq!(stamp(t), "20250520T134512Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00Z");
    }
}
