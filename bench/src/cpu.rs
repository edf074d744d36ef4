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

/// The whole machine's CPU time so far (all CPUs, the first line of
/// /proc/stat), in ticks: what was idle, what the hypervisor gave to other
/// guests (steal), and everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub idle: u64,
    pub steal: u64,
    pub total: u64,
}

impl MachineTicks {
    /// Now, or `None` where /proc/stat cannot be read.
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        let &[user, nice, system, idle, iowait, irq, softirq, steal] = fields.as_slice() else {
            return None;
        };
        Some(Self {
            idle: idle + iowait,
            steal,
            total: user + nice + system + idle + iowait + irq + softirq + steal,
        })
    }

    /// The shares of the machine's CPU time that were idle and stolen from
    /// `self` to `later`, in percent; `None` when no time passed.
    pub fn shares_until(self, later: Self) -> Option<(f64, f64)> {
        let total = later.total.checked_sub(self.total).filter(|t| *t > 0)? as f64;
        let idle = later.idle.saturating_sub(self.idle) as f64;
        let steal = later.steal.saturating_sub(self.steal) as f64;
        Some((100.0 * idle / total, 100.0 * steal / total))
    }
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

    #[test]
    fn machine_shares_from_proc_stat() {
        let before =
            MachineTicks::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n")
                .unwrap();
        assert_eq!(
            before,
            MachineTicks {
                idle: 850,
                steal: 0,
                total: 1000
            }
        );
        // 200 ticks later: 30 idle, 20 iowait, 40 stolen.
        let after = MachineTicks::parse("cpu  170 0 90 830 70 0 0 40 0 0\nintr 5\n").unwrap();
        let (idle, steal) = before.shares_until(after).unwrap();
        assert!((idle - 25.0).abs() < 1e-9, "{idle}");
        assert!((steal - 20.0).abs() < 1e-9, "{steal}");
        assert_eq!(before.shares_until(before), None);
        assert_eq!(MachineTicks::parse("cpu  1 2 3\n"), None);
        assert_eq!(MachineTicks::parse("intr 5\n"), None);
        assert!(MachineTicks::now().is_some());
    }
}
