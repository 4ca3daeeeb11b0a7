//! Reading a child's CPU time and memory from `/proc` (Linux only; elsewhere every reading is
//! `None`).

/// Clock ticks per second of `utime`/`stime` (`getconf CLK_TCK`; 100 on every Linux target
/// this runs on).
pub(crate) const CLK_TCK: f64 = 100.0;

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may contain spaces, so fields are counted after the last `)`.
pub(crate) fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: state is field 3, so utime (14) and stime (15) are the 12th and 13th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The value in kB of `key` (`VmRSS`, `VmHWM`, …) in the text of `/proc/<pid>/status`.
pub(crate) fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds (user + system) the process has used so far.
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "tick counts stay far below 2^52"
    )]
    Some(parse_stat_ticks(&stat)? as f64 / CLK_TCK)
}

/// A memory figure of the process in bytes (`VmRSS` now, `VmHWM` peak).
pub(crate) fn mem_bytes(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_status_kb(&status, key)? * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (cursor pool (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_values_in_kb() {
        let status =
            "Name:\tcursorpool\nVmPeak:\t  100 kB\nVmHWM:\t    8192 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(8192));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(4096));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }
}
