//! CPU time of processes from /proc (user + system), in microseconds.

/// Linux reports /proc times in USER_HZ ticks, 100 per second on every
/// architecture the project builds for.
const TICK_US: u64 = 10_000;

/// User + system time of one process (all its threads), if it still exists.
pub fn process_us(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * TICK_US)
}

/// Summed CPU time of several processes (missing ones count 0).
pub fn processes_us(pids: &[i32]) -> u64 {
    pids.iter().filter_map(|p| process_us(*p)).sum()
}

/// This process's CPU time.
pub fn own_us() -> u64 {
    process_us(std::process::id().try_into().unwrap_or(0)).unwrap_or(0)
}

/// Resident memory (VmRSS) of a process in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        // Burn a little CPU so the counter is not necessarily zero, then read it.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_us(me).is_some());
        assert!(rss_kib(me).is_some_and(|k| k > 100));
        assert_eq!(process_us(-5), None);
    }
}
