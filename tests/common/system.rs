//! What the tests ask of the operating system: whether processes and process groups
//! are still alive (zombies aside), signals to leftovers, and the clock in the form
//! queuectl prints it.

/// Parses an RFC 3339 UTC timestamp ending in `Z` (`2024-01-02T03:04:05.678Z`, any
/// number of fraction digits) into Unix milliseconds; panics on anything else.
///
/// jiff reads the wider ISO 8601 grammar (`+00:00` or `[UTC]` instead of `Z`, a space
/// instead of `T`, no seconds), so the shape queuectl promises is checked first:
/// a `T` after the full date, seconds after `HH:MM`, and a final `Z`.
pub fn parse_time(text: &str) -> i64 {
    let rfc3339_utc_shape =
        text.get(10..11) == Some("T") && text.get(16..17) == Some(":") && text.ends_with('Z');
    match text.parse::<jiff::Timestamp>() {
        Ok(time) if rfc3339_utc_shape => time.as_millisecond(),
        _ => panic!("not an RFC 3339 UTC timestamp with Z: {text:?}"),
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Whether process `pid` is running (a zombie does not count).
///
/// Reads `/proc/PID/stat` rather than asking `kill(pid, 0)`: a killed job stays a
/// zombie until its parent (or init) reaps it, and `kill` reports a zombie as alive;
/// only its state letter tells it apart.
pub fn process_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat_fields(&stat).is_some_and(|fields| !is_zombie(&fields)))
}

/// Whether any running process (zombies aside) is in process group `pgid`.
///
/// `kill(-pgid, 0)` answers "does any process, zombies included, have this group?";
/// when it says no, that is final. When it says yes, the group may hold only
/// zombies waiting to be reaped, so `/proc` is searched for a live member.
pub fn process_group_alive(pgid: i64) -> bool {
    let Some(group) = process_group_target(pgid) else {
        return false;
    };
    // SAFETY: kill takes plain integers and touches no memory of ours; signal 0
    // only checks that the group exists, it sends nothing.
    if unsafe { libc::kill(group, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // After the name: state, ppid, pgrp.
        stat_fields(&stat).is_some_and(|fields| {
            !is_zombie(&fields) && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
        })
    })
}

/// The fields of a `/proc/PID/stat` line after the process name (which is in
/// parentheses and may itself hold spaces or parentheses): state, ppid, pgrp, ...
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (!fields.is_empty()).then_some(fields)
}

/// Whether the state letter in `stat_fields` says zombie (`Z`) or dead (`X`).
fn is_zombie(fields: &[&str]) -> bool {
    matches!(fields.first(), Some(&"Z") | Some(&"X"))
}

/// `-pgid` as the pid argument that makes `kill` address the whole group, or `None`
/// for group ids that would address something else (`kill(0)` is our own group,
/// `kill(-1)` every process we may signal).
fn process_group_target(pgid: i64) -> Option<libc::pid_t> {
    let pgid = libc::pid_t::try_from(pgid).ok()?;
    (pgid > 1).then_some(-pgid)
}

/// Sends SIGKILL to process group `pgid` (a job this test started, left running on
/// purpose); a group that is already gone is fine.
pub fn kill_group(pgid: i64) {
    if let Some(group) = process_group_target(pgid) {
        // SAFETY: kill takes plain integers and touches no memory of ours; `group`
        // is negative and below -1, so it addresses exactly that one process group.
        // The result is ignored on purpose: the group may already be gone.
        unsafe { libc::kill(group, libc::SIGKILL) };
    }
}

#[test]
fn parse_time_accepts_only_rfc3339_utc_with_z() {
    assert_eq!(parse_time("2024-01-02T03:04:05.678Z"), 1_704_164_645_678);
    assert_eq!(parse_time("2024-01-02T03:04:05Z"), 1_704_164_645_000);
    assert_eq!(parse_time("2024-01-02T03:04:05.6789Z"), 1_704_164_645_678);
    for text in [
        "2024-01-02T03:04:05+00:00",
        "2024-01-02T03:04:05Z[UTC]",
        "2024-01-02 03:04:05Z",
        "2024-01-02T03:04Z",
        "2024-01-02T03:04:05.678z",
        "2024-1-02T03:04:05Z",
        "20240102T030405Z",
        "2024-01-02T03:04:05",
        "",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_time(text)).is_err(),
            "{text:?} was accepted"
        );
    }
}

/// Whether process `pid` is stopped (state `T`, as after SIGSTOP or Ctrl-Z).
pub fn process_stopped(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat_fields(&stat).is_some_and(|fields| fields.first() == Some(&"T")))
}
