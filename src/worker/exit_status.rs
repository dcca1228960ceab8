//! What a job shell's end means: its wait status turned into the attempt's outcome
//! (`exit code 3`, `killed by signal 9 (SIGKILL)`, with a hint for 126 and 127) and
//! the facts the history keeps (pid, signal, peak memory, CPU time). Pure functions
//! of what `wait4` reported, so both are the same wherever the shell ran.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::job::Outcome;
use crate::store::AttemptFacts;

/// The history's facts about the shell `pid` that ended with `status`.
pub fn facts_of(pid: i32, status: ExitStatus, usage: Option<&libc::rusage>) -> AttemptFacts {
    let millis = |t: &libc::timeval| t.tv_sec * 1000 + t.tv_usec / 1000;
    AttemptFacts {
        host: None,
        pid: Some(i64::from(pid)),
        signal: status.signal().map(i64::from),
        // Linux reports ru_maxrss in KiB.
        max_rss_kb: usage.map(|u| u.ru_maxrss),
        cpu_ms: usage.map(|u| millis(&u.ru_utime) + millis(&u.ru_stime)),
    }
}

pub fn outcome_of(status: ExitStatus) -> Outcome {
    if status.success() {
        return Outcome::Succeeded;
    }
    if let Some(code) = status.code() {
        let hint = match code {
            126 => " (command not executable)",
            127 => " (command not found)",
            _ => "",
        };
        return Outcome::Failed {
            exit_code: Some(i64::from(code)),
            error: format!("exit code {code}{hint}"),
        };
    }
    let signal = status.signal().unwrap_or(0);
    Outcome::Failed {
        exit_code: None,
        error: format!("killed by signal {signal}{}", signal_name(signal)),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGPIPE => " (SIGPIPE)",
        _ => "",
    }
}
