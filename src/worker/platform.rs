//! The few operating-system facts workers rely on, kept out of the queue logic:
//! the host name, process start times (so a reused pid is never mistaken for a worker
//! or a job), liveness checks and process-group signals. Linux-specific parts read
//! `/proc`.

use std::fs;
use std::io;

/// The name workers register under. `QUEUECTL_HOSTNAME` overrides it, so tests can
/// play several machines on one.
pub fn host_name() -> String {
    if let Ok(name) = std::env::var("QUEUECTL_HOSTNAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_owned();
    }
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// When `pid` started, in clock ticks since boot, or `None` if it is not running.
pub fn process_start(pid: i64) -> Option<i64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 is first after the name; the start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still running. A zombie
/// still has its /proc entry but is not alive.
pub fn is_alive(pid: i64, start: i64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut fields = after_name.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    let started = fields.nth(18).and_then(|s| s.parse::<i64>().ok());
    state != "Z" && state != "X" && started == Some(start)
}

/// This process's pid and start time.
pub fn current_process() -> (i64, i64) {
    let pid = i64::from(std::process::id());
    (pid, process_start(pid).unwrap_or(0))
}

/// Sends `signal` to every process in group `pgid`. A group that no longer exists is
/// not an error.
pub fn signal_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal process group <= 1",
        ));
    }
    // SAFETY: killpg has no memory-safety preconditions; pgid > 1 is checked above so
    // it can never address every process.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(err)
}

/// Kills the process group of an interrupted attempt, given what its run marker
/// recorded: the group leader's pid and start time. While any member of the group is
/// alive the kernel does not reuse the group id, so the group is ours if the leader is
/// gone or is still the process that started at `leader_start`.
pub fn kill_orphaned_group(pgid: i32, leader_start: i64) -> io::Result<()> {
    match process_start(i64::from(pgid)) {
        Some(start) if start != leader_start => Ok(()),
        _ => signal_group(pgid, libc::SIGKILL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_itself() {
        let (pid, start) = current_process();
        assert!(start > 0);
        assert!(is_alive(pid, start));
        assert!(!is_alive(pid, start + 1));
    }

    #[test]
    fn refuses_to_signal_everything() {
        assert!(signal_group(0, 0).is_err());
        assert!(signal_group(1, 0).is_err());
    }
}
