//! A full disk on the queue's side (issue #15, defect 8): the store and the spool
//! live on a small tmpfs. An attempt that fails because the spool's disk is full is
//! an interruption (no attempt used), the worker stops claiming until space is
//! freed and notices within seconds, and a job printing fast cannot fill the disk
//! with its spool file.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere these tests print why
//! they were skipped.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Env, wait_until};

/// A tmpfs mounted for one test; unmounted on drop, even when the test fails.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`16m`) at `path`, private (0700), or says why not.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs for a full disk needs root");
            return None;
        }
        fs::create_dir_all(path).expect("create the mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?)");
            return None;
        }
        Some(Tmpfs {
            path: path.to_owned(),
        })
    }

    /// Writes a file until the tmpfs is full; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
            .expect("create the filler");
        for size in [1 << 20, 4096, 1] {
            let block = vec![b'x'; size];
            while file.write_all(&block).is_ok() {}
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a worker still running (killed after this drop) keeps files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Mounts a tmpfs where `env` keeps its store (SQLite) and spool (both stores),
/// before the store is created.
fn tmpfs_home(env: &mut Env, size: &str) -> Option<Tmpfs> {
    let tmpfs = Tmpfs::mount(&env.path().join("home"), size)?;
    env.ensure_store();
    Some(tmpfs)
}

backend_test!(a_job_failing_on_a_full_spool_disk_uses_no_attempt, |env| {
    let Some(tmpfs) = tmpfs_home(&mut env, "16m") else {
        return;
    };
    // A charged attempt would make the job dead at once.
    env.ok(&["config", "set", "max-retries", "0"]);
    let started = env.file("started");
    let go = env.file("go");
    let id = env.enqueue(&format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done; echo written-after-the-disk-filled",
        started.display(),
        go.display()
    ));
    env.spawn_workers(&["--count", "1"]);
    wait_until("the job to start", Duration::from_secs(20), || {
        started.exists()
    });
    let filler = tmpfs.fill();
    fs::write(&go, "").expect("let the job print");
    wait_until(
        "the worker to pause claiming",
        Duration::from_secs(20),
        || env.read("worker-1.log").contains("claiming paused"),
    );
    if env.backend == crate::common::Backend::Postgres {
        // The store is elsewhere: the interruption is recorded at once, and the
        // worker does not claim the job again while the disk is full.
        let job = env.wait_state(&id, "pending", Duration::from_secs(10));
        assert_eq!(
            (&job["attempts"], &job["interruptions"]),
            (&0.into(), &1.into()),
            "{job}"
        );
    }
    fs::remove_file(&filler).expect("free the disk");
    let freed = Instant::now();
    let job = env.wait_state(&id, "completed", Duration::from_secs(20));
    let took = freed.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "noticed the space after {took:?}"
    );
    assert_eq!(job["attempts"], 1, "the full disk used no attempt: {job}");
    assert_eq!(job["interruptions"], 1, "{job}");
    let log = env.read("worker-1.log");
    assert!(log.contains("claiming resumed"), "{log}");
    let output = env.ok(&["logs", &id]);
    assert!(output.contains("written-after-the-disk-filled"), "{output}");
});

backend_test!(a_job_printing_fast_cannot_fill_the_spool_disk, |env| {
    let Some(_tmpfs) = tmpfs_home(&mut env, "24m") else {
        return;
    };
    env.ok(&["config", "set", "max-retries", "0"]);
    // About 40 MB in 128 KiB pieces: more than the disk holds.
    let id = env.enqueue(
        "i=0; while [ $i -lt 300 ]; do head -c 131072 /dev/zero | tr '\\0' x; i=$((i+1)); done; \
         echo; echo end",
    );
    env.spawn_workers(&["--count", "1"]);
    let job = env.wait_state(&id, "completed", Duration::from_secs(60));
    assert_eq!(
        (&job["attempts"], &job["interruptions"]),
        (&1.into(), &0.into()),
        "{job}"
    );
    let output = env.ok(&["logs", &id]);
    assert!(output.trim_end().ends_with("end"), "the tail is kept");
});
