//! No attempt outlives its worker (issue #15, defect 2). Two "hosts" on one machine
//! (`QUEUECTL_HOSTNAME`): host A's worker is SIGKILLed while its job runs background
//! processes (a heartbeat loop that ignores SIGTERM and SIGHUP, a `nohup` sleep, a
//! pipeline); host B cannot see A's processes and recovers the job only when its
//! lease expires. A's attempt guard must have killed all of them by then, so the two
//! runs of the job never overlap.

use std::time::{Duration, Instant};

use crate::common::{Env, process_alive, process_group_alive, wait_until};

/// First run (host A): records its group and its background pids, starts a
/// heartbeat, and hangs. Second run (host B): records when it started, which of
/// A's processes it could still see running, and its host.
const JOB: &str = r#"
if [ -e ran-a ]; then
  date +%s%N > b-start
  for p in $(cat pids-a); do
    if [ -r /proc/$p/stat ] && ! grep -q ') [ZX] ' /proc/$p/stat; then echo $p >> overlap; fi
  done
  echo "$QUEUECTL_HOSTNAME" > b-host
else
  touch ran-a
  echo $$ > pgid-a
  (trap '' TERM HUP; while :; do date +%s%N > beat.tmp; mv beat.tmp beat; sleep 0.05; done) &
  echo $! >> pids-a
  nohup sleep 1000 > /dev/null 2>&1 &
  echo $! >> pids-a
  sleep 1000 | cat &
  echo $! >> pids-a
  echo ready > ready-a
  sleep 1000
fi
"#;

fn nanos(env: &Env, file: &str) -> u128 {
    env.read(file)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{file}"))
}

backend_test!(
    a_sigkilled_workers_background_processes_die_before_another_host_reruns_the_job,
    |env| {
        env.ok(&["config", "set", "heartbeat-interval", "1"]);
        env.ok(&["config", "set", "lease-timeout", "4"]);
        let host_a = env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "hosta")]);
        env.wait_live_workers(1, Duration::from_secs(20));
        env.ok(&["enqueue", "--id", "twice", "--command", JOB]);
        wait_until("host A to start the job", Duration::from_secs(20), || {
            env.file("ready-a").exists()
        });
        let pgid: i64 = env.read("pgid-a").trim().parse().unwrap();
        let pids: Vec<i64> = env
            .read("pids-a")
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 3, "{pids:?}");
        assert!(pids.iter().all(|p| process_alive(*p)), "{pids:?}");
        env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "hostb")]);
        env.wait_live_workers(2, Duration::from_secs(20));

        env.signal(host_a, libc::SIGKILL);
        let killed = Instant::now();
        // Host A's guard acts at once; host B may rerun the job only after the
        // 4 s lease. Everything of A must be gone before B starts.
        wait_until(
            "every process of host A's attempt to die",
            Duration::from_secs(10),
            || !process_group_alive(pgid) && pids.iter().all(|p| !process_alive(*p)),
        );
        let took = killed.elapsed();
        eprintln!("host A's attempt was gone {took:?} after its worker was killed");
        assert!(
            !env.file("b-start").exists(),
            "host B reran the job while host A's attempt was still running ({took:?})"
        );
        let last_beat = nanos(&env, "beat");
        // The guard says what it did, in the worker's log.
        wait_until("the guard's log line", Duration::from_secs(10), || {
            env.read("worker-1.log")
                .contains("worker died: killed the process group")
        });

        let job = env.wait_state("twice", "completed", Duration::from_secs(30));
        assert_eq!(job["attempts"], 1, "{job}");
        assert_eq!(job["interruptions"], 1, "{job}");
        assert_eq!(env.read("b-host").trim(), "hostb");
        assert!(
            !env.file("overlap").exists(),
            "host B's run saw host A's processes running: {}",
            env.read("overlap")
        );
        // No heartbeat after the kill, and the runs did not overlap.
        assert_eq!(nanos(&env, "beat"), last_beat, "the heartbeat went on");
        assert!(last_beat < nanos(&env, "b-start"), "the runs overlapped");
    }
);

/// The pid of worker process `worker`'s attempt guard, if it runs.
fn guard_of(worker: u32) -> Option<i64> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let (state, ppid) = (fields.next()?, fields.next()?);
            (name.ends_with("(queuectl-guard")
                && state != "Z"
                && ppid.parse::<u32>().ok()? == worker)
                .then(|| entry.file_name().to_str()?.parse().ok())
                .flatten()
        })
}

backend_test!(
    a_killed_guard_is_replaced_and_the_replacement_does_the_job,
    |env| {
        let worker = env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "hosta")]);
        env.wait_live_workers(1, Duration::from_secs(20));
        let mut first = None;
        wait_until("the worker's guard", Duration::from_secs(10), || {
            first = guard_of(worker);
            first.is_some()
        });
        let first = first.unwrap();
        // SAFETY: kill takes plain integers; `first` is the guard of our worker.
        unsafe { libc::kill(first as libc::pid_t, libc::SIGKILL) };
        wait_until("a new guard", Duration::from_secs(10), || {
            guard_of(worker).is_some_and(|pid| pid != first)
        });
        assert!(env.read("worker-1.log").contains("started another"));

        env.ok(&[
            "enqueue",
            "--command",
            "echo $$ > pgid; sleep 1000 & echo $! > bg; sleep 1000",
        ]);
        wait_until(
            "the job's background sleep",
            Duration::from_secs(20),
            || !env.read("bg").trim().is_empty(),
        );
        let pgid: i64 = env.read("pgid").trim().parse().unwrap();
        let bg: i64 = env.read("bg").trim().parse().unwrap();
        assert!(process_alive(bg));
        env.signal(worker, libc::SIGKILL);
        // Nothing else on "hosta" could kill it: only the replacement guard.
        wait_until(
            "the replacement guard to kill the job's group",
            Duration::from_secs(10),
            || !process_group_alive(pgid) && !process_alive(bg),
        );
    }
);

/// Whether a run marker in the worker's spool (under the environment's home, where
/// both stores keep it) names job `id`.
fn run_marker_names(env: &Env, id: &str) -> bool {
    fn walk(dir: &std::path::Path, depth: u32, id: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                return depth > 0 && walk(&path, depth - 1, id);
            }
            path.parent().is_some_and(|p| p.ends_with("run"))
                && std::fs::read_to_string(&path)
                    .is_ok_and(|text| text.split_whitespace().next() == Some(id))
        })
    }
    walk(&env.path().join("home"), 4, id)
}

backend_test!(
    when_the_guard_cannot_act_the_run_marker_lets_recovery_here_kill_the_leftovers,
    |env| {
        // The second defence (DECISIONS §21, §29): an attempt that has run a while
        // is named in its slot's run marker, so when the worker dies with its guard
        // (killed just before it here; the worker would start another guard only
        // at its next once-a-second check), a recovery on the same host kills what
        // the attempt left running. (A stopped guard would not do: when the worker
        // dies, the kernel continues the orphaned, stopped guard, which acts.)
        let worker = env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "hosta")]);
        env.wait_live_workers(1, Duration::from_secs(20));
        let mut guard = None;
        wait_until("the worker's guard", Duration::from_secs(10), || {
            guard = guard_of(worker);
            guard.is_some()
        });
        let guard = guard.unwrap() as libc::pid_t;
        env.ok(&[
            "enqueue",
            "--id",
            "leftover",
            "--command",
            "if [ -e ran ]; then exit 0; fi; touch ran; sleep 1000 & echo $! > bg; sleep 1000",
        ]);
        wait_until(
            "the job's background sleep",
            Duration::from_secs(20),
            || !env.read("bg").trim().is_empty(),
        );
        let bg: i64 = env.read("bg").trim().parse().unwrap();
        wait_until("the run marker", Duration::from_secs(20), || {
            run_marker_names(&env, "leftover")
        });
        // SAFETY: kill takes plain integers; `guard` is our worker's guard.
        unsafe { libc::kill(guard, libc::SIGKILL) };
        env.signal(worker, libc::SIGKILL);
        wait_until("the worker to die", Duration::from_secs(10), || {
            !process_alive(i64::from(worker))
        });
        assert!(process_alive(bg), "nothing should have killed it yet");

        env.spawn_workers_with(&[], &[("QUEUECTL_HOSTNAME", "hosta")]);
        wait_until(
            "the recovery on hosta to kill the attempt's background sleep",
            Duration::from_secs(20),
            || !process_alive(bg),
        );
        let job = env.wait_state("leftover", "completed", Duration::from_secs(30));
        assert_eq!(job["interruptions"], 1, "{job}");
    }
);
