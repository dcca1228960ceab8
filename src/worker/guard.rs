//! The attempt guard: one small process per worker process that kills what is left
//! of its running attempts the moment the worker dies, however it dies (SIGKILL, the
//! OOM killer, a panic), so no attempt outlives its worker while another host
//! recovers the job (issue #15, defect 2; DECISIONS §21).
//!
//! The worker's job shells die with it (`PR_SET_PDEATHSIG`), but what they started
//! in the background is reparented to init and would run on beside the job's next
//! run elsewhere. Those processes are still in the attempt's process group, so
//! killing the group is enough; the question is who does it when the worker cannot.
//!
//! How it works, and why it costs a job nothing:
//! - [`Guard::start`] re-executes this binary (`/proc/self/exe __attempt-guard`)
//!   once per worker process, in a process group of its own (so signals meant for the
//!   worker's terminal or group do not reach it). It gets two descriptors: the read
//!   end of a pipe whose only writer is the worker (stdin), and a `memfd` (stdout)
//!   holding one 32-bit cell per slot, mapped shared by both processes.
//! - Each job shell stores its process group id in its slot's cell itself, in the
//!   spawned child before `execve` ([`crate::worker::spawn`]): no command of the
//!   attempt can run, let alone fork, before the guard can see its group. The
//!   supervisor clears the cell once it has killed the group's stragglers, before
//!   it reaps the shell (so the id is still reserved). Per attempt that is two
//!   memory stores: no system call, no wake-up of the guard.
//! - The guard sleeps in `read` on the pipe. The pipe's write end is close-on-exec
//!   and held only by the worker, so `read` returns end-of-file exactly when the
//!   worker process is gone. The guard then sends SIGKILL to every group still in a
//!   cell, again 50 ms later for anything that raced a fork, and exits. A worker that
//!   exits normally has no attempt running, so its guard just exits.
//! - The worker checks once a second that its guard still runs
//!   ([`Guard::keep_alive`]) and starts another on the same cells if not.
//!
//! What escapes: a process that leaves the attempt's process group (`setsid`,
//! daemonizing commands, `set -m` job control in a script). Documented in the README.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The hidden first argument that makes `queuectl` run as an attempt guard.
pub const GUARD_ARG: &str = "__attempt-guard";

/// Whether this process was started as an attempt guard (`main` asks first).
pub fn is_guard_invocation() -> bool {
    std::env::args_os().nth(1).as_deref() == Some(OsStr::new(GUARD_ARG))
}

/// The shared cells: one process group id (or 0) per slot.
struct Cells {
    ptr: *mut AtomicI32,
    len: usize,
}

// SAFETY: the mapping is only ever accessed through atomics, and it stays mapped
// until the last `Arc<Cells>` is dropped.
unsafe impl Send for Cells {}
// SAFETY: as above; `AtomicI32` is safe to share between threads (and processes).
unsafe impl Sync for Cells {}

impl Cells {
    fn bytes(slots: usize) -> usize {
        slots.max(1) * std::mem::size_of::<AtomicI32>()
    }

    /// Maps `len` cells of `fd`, shared, read-write or read-only.
    fn map(fd: i32, len: usize, writable: bool) -> io::Result<Cells> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a descriptor we own; the kernel picks
        // the address. It is unmapped exactly once, in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Cells::bytes(len),
                prot,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Cells {
            ptr: ptr.cast(),
            len,
        })
    }

    fn get(&self, index: usize) -> Option<&AtomicI32> {
        // SAFETY: `index < len` cells of the mapping, which lives as long as `self`;
        // the memory is zero-initialised by the kernel, a valid AtomicI32.
        (index < self.len).then(|| unsafe { &*self.ptr.add(index) })
    }
}

impl Drop for Cells {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), Cells::bytes(self.len)) };
    }
}

/// One slot's cell: where its job shell announces its process group to the guard.
#[derive(Clone)]
pub struct GuardCell {
    cells: Arc<Cells>,
    index: usize,
}

impl std::fmt::Debug for GuardCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuardCell({})", self.index)
    }
}

impl GuardCell {
    /// The cell itself, for the spawned child to store its group id in.
    pub fn cell(&self) -> &AtomicI32 {
        // `index` was checked against the mapping when the cell was handed out.
        self.cells.get(self.index).unwrap_or_else(|| unreachable!())
    }

    /// The attempt is over and its group killed: the guard must leave the group be.
    pub fn clear(&self) {
        self.cell().store(0, Ordering::Release);
    }
}

/// How often the worker checks that its guard is still running.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The worker's end of its attempt guard.
pub struct Guard {
    /// The cells' memory, kept to hand to a replacement guard.
    memfd: OwnedFd,
    cells: Arc<Cells>,
    /// The pipe's only write end; closing it (or dying) tells the guard to act.
    alive: Option<OwnedFd>,
    child: Child,
    next_check: Instant,
    /// Whether the last attempt to replace a dead guard failed (warned once).
    replace_failed: bool,
}

impl Guard {
    /// Starts the guard process of a worker process with `slots` slots.
    pub fn start(slots: usize) -> io::Result<Guard> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let memfd = unsafe { libc::memfd_create(c"queuectl-guard".as_ptr(), libc::MFD_CLOEXEC) };
        if memfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let memfd = unsafe { OwnedFd::from_raw_fd(memfd) };
        let len = libc::off_t::try_from(Cells::bytes(slots))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many slots"))?;
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let cells = Arc::new(Cells::map(memfd.as_raw_fd(), slots, true)?);
        let (alive, child) = spawn_guard(&memfd)?;
        Ok(Guard {
            memfd,
            cells,
            alive: Some(alive),
            child,
            next_check: Instant::now() + CHECK_EVERY,
            replace_failed: false,
        })
    }

    /// The cell of slot `index` (0-based).
    pub fn cell(&self, index: usize) -> Option<GuardCell> {
        self.cells.get(index)?;
        Some(GuardCell {
            cells: Arc::clone(&self.cells),
            index,
        })
    }

    /// At most once a second: if the guard process has died (killed by hand, or by
    /// the OOM killer), starts another on the same cells, so running attempts are
    /// guarded again within about a second.
    pub fn keep_alive(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        let Ok(Some(status)) = self.child.try_wait() else {
            return;
        };
        match spawn_guard(&self.memfd) {
            Ok((alive, child)) => {
                crate::log::warn(&format!(
                    "the attempt guard (pid {}) ended ({status}); started another (pid {})",
                    self.child.id(),
                    child.id()
                ));
                self.alive = Some(alive);
                self.child = child;
                self.replace_failed = false;
            }
            Err(e) if !self.replace_failed => {
                crate::log::warn(&format!(
                    "the attempt guard ended and cannot be restarted ({e}): if this \
                     worker dies, what its jobs started in the background keeps running"
                ));
                self.replace_failed = true;
            }
            Err(_) => {}
        }
    }
}

/// Starts a guard process on the cells in `memfd`; returns the write end of its
/// pipe and the process.
fn spawn_guard(memfd: &OwnedFd) -> io::Result<(OwnedFd, Child)> {
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new descriptors we own.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let child = Command::new("/proc/self/exe")
        .arg0("queuectl")
        .arg(GUARD_ARG)
        .stdin(Stdio::from(read))
        .stdout(Stdio::from(memfd.try_clone()?))
        .process_group(0)
        .spawn()?;
    Ok((write, child))
}

impl Drop for Guard {
    /// Tells the guard the worker is done (it kills any group still announced, none
    /// after a normal stop) and reaps it, waiting at most a second.
    fn drop(&mut self) {
        drop(self.alive.take());
        let deadline = Instant::now() + Duration::from_secs(1);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The guard process (`queuectl __attempt-guard`): waits for its worker to die,
/// then kills every attempt group still announced. Returns the exit code.
pub fn guard_main() -> i32 {
    // SAFETY: prctl with a NUL-terminated name; signal() with plain constants.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"queuectl-guard".as_ptr());
        // Only its worker's death ends a guard (or SIGKILL).
        for signal in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    // SAFETY: fstat writes into a plain struct we own.
    let size = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(1, &mut stat) != 0 {
            crate::log::warn("attempt guard: no cells on stdout; run only by `worker start`");
            return 2;
        }
        stat.st_size
    };
    let slots = usize::try_from(size).unwrap_or(0) / std::mem::size_of::<AtomicI32>();
    let cells = match Cells::map(1, slots, false) {
        Ok(cells) => cells,
        Err(e) => {
            crate::log::warn(&format!("attempt guard: cannot map the cells: {e}"));
            return 2;
        }
    };
    // The mapping stays; stdout goes back to /dev/null so nothing lands in the cells.
    // SAFETY: open/dup2/close on descriptors this process owns.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    wait_for_end_of_file(0);
    let killed = kill_announced(&cells);
    if !killed.is_empty() {
        // A fork racing the first kill, if the kernel let one through.
        std::thread::sleep(Duration::from_millis(50));
        kill_announced(&cells);
        crate::log::warn(&format!(
            "worker died: killed the process group(s) {} of its running job(s)",
            killed
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    0
}

/// Blocks until `fd` reports end-of-file (or an error other than EINTR).
fn wait_for_end_of_file(fd: i32) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: read into a buffer we own, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 || n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Sends SIGKILL to every group announced in `cells`; returns them.
fn kill_announced(cells: &Cells) -> Vec<i32> {
    let mut killed = Vec::new();
    for index in 0..cells.len {
        let pgid = cells.get(index).map_or(0, |c| c.load(Ordering::Acquire));
        if pgid > 1 && crate::worker::platform::signal_group(pgid, libc::SIGKILL).is_ok() {
            killed.push(pgid);
        }
    }
    killed
}
