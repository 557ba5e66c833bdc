//! CPU time of a process from `/proc/PID/stat` (user + system, all threads), and of one core from
//! `/proc/stat` (which also counts interrupt and softirq time, charged to no process), in nanoseconds.

use std::fs;
use std::io;
use std::sync::OnceLock;

/// User + system CPU time consumed so far by process `pid` (all its threads), in nanoseconds.
///
/// The kernel counts in clock ticks (usually 10 ms), so measure over seconds, not milliseconds.
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/stat"))?;
    Ok(ticks.saturating_mul(1_000_000_000) / ticks_per_second())
}

/// This process's own CPU time, in nanoseconds.
pub fn self_cpu_ns() -> io::Result<u64> {
    cpu_ns(std::process::id())
}

/// Resident set size of process `pid` (`VmRSS` in `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc/PID/status"))
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Time core `cpu` spent busy (user, nice, system, irq, softirq) and in total (also idle, iowait,
/// steal) since boot, in nanoseconds.
pub fn core_ns(cpu: usize) -> io::Result<CoreTimes> {
    let stat = fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no {name} in /proc/stat"))
        })?;
    let times = parse_core(line)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/stat"))?;
    let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / ticks_per_second();
    Ok(CoreTimes {
        busy_ns: ns(times.busy_ns),
        total_ns: ns(times.total_ns),
    })
}

/// Busy and total time of one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreTimes {
    /// User, nice, system, irq and softirq time.
    pub busy_ns: u64,
    /// Busy time plus idle, iowait and steal.
    pub total_ns: u64,
}

/// Busy and total ticks (in the `_ns` fields) of a `cpuN` line of `/proc/stat`.
fn parse_core(line: &str) -> Option<CoreTimes> {
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields.try_into().ok()?;
    let busy = user + nice + system + irq + softirq;
    Some(CoreTimes {
        busy_ns: busy,
        total_ns: busy + idle + iowait + steal,
    })
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name (field 2) is in parentheses
/// and may hold spaces, so fields are counted from the last `)`: `utime` and `stime` are fields 14 and
/// 15 of the whole line.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value; it has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_past_the_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 123 45 0 0 20 0 3 0 \
                    100 1000 50 18446744073709551615";
        assert_eq!(parse_ticks(stat), Some(168));
        assert_eq!(parse_ticks("garbage"), None);
    }

    #[test]
    fn parses_a_core_line() {
        let line = "cpu1 43803 5 11960 50358 1231 7 1026 963 0 0";
        let busy = 43803 + 5 + 11960 + 7 + 1026;
        assert_eq!(
            parse_core(line),
            Some(CoreTimes {
                busy_ns: busy,
                total_ns: busy + 50358 + 1231 + 963
            })
        );
        assert!(core_ns(0).expect("cpu0 in /proc/stat").total_ns > 0);
    }

    #[test]
    fn reads_the_resident_set_size() {
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t  12345 kB\nVmSwap: 0 kB\n"),
            Some(12345)
        );
        assert_eq!(parse_rss("Name:\tkthreadd\n"), None);
        assert!(rss_kib(std::process::id()).expect("readable /proc/self/status") > 0);
    }

    #[test]
    fn reads_its_own_cpu_time() {
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(self_cpu_ns().expect("readable /proc/self/stat") > 0);
    }
}
