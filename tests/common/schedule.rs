//! Helpers for the scheduling tests (issue 11): enqueueing with options, reading
//! `queue list` and `cron list`, checking that nothing happens for a while, overlap
//! from the start/end marks jobs write, and a seeded random number generator (the
//! same numbers on every run, so a failure can be replayed).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Env;

impl Env {
    /// Runs `queuectl enqueue ARGS` and returns the id from `Enqueued: ID`.
    pub fn enqueue_args(&self, args: &[&str]) -> String {
        let mut all = vec!["enqueue"];
        all.extend_from_slice(args);
        enqueued_id(&self.ok(&all))
    }

    /// Every job, oldest first (`list --json`).
    pub fn jobs(&self) -> Vec<Value> {
        match self.json(&["list"]) {
            Value::Array(jobs) => jobs,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// The `queue list --json` entry of queue `name`; panics if it is not listed.
    pub fn queue_info(&self, name: &str) -> Value {
        let queues = self.json(&["queue", "list"]);
        let queues = queues
            .as_array()
            .unwrap_or_else(|| panic!("queue list --json is not an array: {queues}"));
        queues
            .iter()
            .find(|q| q["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("queue {name} is not in queue list --json: {queues:?}"))
    }

    /// `cron list --json`.
    pub fn cron_entries(&self) -> Vec<Value> {
        match self.json(&["cron", "list"]) {
            Value::Array(entries) => entries,
            other => panic!("cron list --json is not an array: {other}"),
        }
    }

    /// The lines of human `list` output that mention `id`.
    pub fn list_row(&self, id: &str) -> String {
        let table = self.ok(&["list", "--utc"]);
        let rows: Vec<&str> = table.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(rows.len(), 1, "one row for {id} in:\n{table}");
        rows[0].to_owned()
    }
}

/// The id in `enqueue`'s `Enqueued: ID` line.
pub fn enqueued_id(out: &str) -> String {
    out.trim()
        .strip_prefix("Enqueued: ")
        .unwrap_or_else(|| panic!("unexpected enqueue output: {out}"))
        .to_owned()
}

/// Checks `check` every 50 ms for `period` and panics the first time it is false: for
/// claims that something does NOT happen for a while (a paused queue runs nothing).
pub fn holds_for(what: &str, period: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        let checked_at = start.elapsed();
        assert!(check(), "{what} stopped holding after {checked_at:?}");
        if checked_at >= period {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The count of jobs in `state` in a `queue list --json` entry: a field named after
/// the state, as in `status --json`, or the same under `"counts"`.
pub fn queue_count(entry: &Value, state: &str) -> i64 {
    entry
        .get(state)
        .or_else(|| entry.get("counts").and_then(|c| c.get(state)))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no count of {state} jobs in {entry}"))
}

/// A shell snippet that appends `S <ns>` to `file`, runs `body`, then appends
/// `E <ns>`: the marks [`max_overlap`] reads.
pub fn marked(file: &str, body: &str) -> String {
    format!("echo \"S $(date +%s%N)\" >> {file}; {body}; echo \"E $(date +%s%N)\" >> {file}")
}

/// The most jobs that ran at once according to `S <ns>` / `E <ns>` marks. An end and
/// a start at the same nanosecond count as not overlapping.
pub fn max_overlap(marks: &str) -> usize {
    let mut events: Vec<(i128, i32)> = marks
        .lines()
        .map(|line| {
            let (kind, ns) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad mark line {line:?}"));
            let ns: i128 = ns
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("bad time in {line:?}: {e}"));
            match kind {
                "S" => (ns, 1),
                "E" => (ns, -1),
                _ => panic!("bad mark line {line:?}"),
            }
        })
        .collect();
    events.sort();
    let (mut running, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        running += delta;
        most = most.max(running);
    }
    usize::try_from(most).expect("never negative")
}

/// A nanosecond Unix time as `date +%s%N` wrote it into `text`, if complete.
pub fn ns_time(text: &str) -> Option<i128> {
    text.trim().parse().ok()
}

/// A small seeded generator (xorshift64*): the same numbers on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).expect("lo <= hi");
        lo + i64::try_from(self.next_u64() % span).expect("fits")
    }
}

#[test]
fn max_overlap_counts_jobs_running_at_once() {
    assert_eq!(max_overlap(""), 0);
    assert_eq!(max_overlap("S 1\nE 2\nS 2\nE 3\n"), 1);
    assert_eq!(max_overlap("S 1\nS 2\nE 3\nE 4\n"), 2);
    assert_eq!(max_overlap("S 5\nE 9\nS 1\nS 6\nE 2\nE 7\n"), 2);
}
