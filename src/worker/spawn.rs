//! Starting a job's shell cheaply and safely.
//!
//! `std::process::Command` has to `fork()` the whole worker once it is asked to run
//! code in the child (`pre_exec`), and we need that code: `PR_SET_PDEATHSIG`, so the
//! shell dies with its worker. Forking a multi-threaded process copies its page
//! tables and makes every later write fault and flush TLBs on all cores; measured
//! here, that cost more CPU than running `sh -c true` itself. So, like glibc's
//! `posix_spawn`, this module starts the child with `clone(CLONE_VM | CLONE_VFORK)`
//! on a small stack of its own: no copying at all, the parent waits until the child
//! has called `execve`.
//!
//! Invariants of the child function, which shares the parent's memory:
//! - it only reads data prepared by the parent before `clone`, and writes one
//!   `errno` value back;
//! - it only makes async-signal-safe system calls (no allocation, no locks);
//! - every signal with a handler stays blocked until its handlers are reset to the
//!   default, so no handler of the parent ever runs in it.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// Everything the child needs, prepared before `clone` so the child never allocates.
pub struct SpawnRequest {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    stdout: RawFd,
}

impl SpawnRequest {
    /// `/bin/sh -c command` in `cwd`, with the worker's environment plus `extra_env`,
    /// stdin from /dev/null and stdout and stderr both to `stdout`.
    pub fn shell(
        command: &str,
        cwd: &str,
        extra_env: &[(&str, &str)],
        stdout: RawFd,
    ) -> io::Result<SpawnRequest> {
        let mut envp = Vec::new();
        for (key, value) in std::env::vars_os() {
            if extra_env.iter().any(|(k, _)| OsStr::new(k) == key) {
                continue;
            }
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            envp.push(c_string(entry)?);
        }
        for (key, value) in extra_env {
            envp.push(c_string(format!("{key}={value}").into_bytes())?);
        }
        Ok(SpawnRequest {
            program: c_string(b"/bin/sh".to_vec())?,
            argv: vec![
                c_string(b"sh".to_vec())?,
                c_string(b"-c".to_vec())?,
                c_string(command.as_bytes().to_vec())?,
            ],
            envp,
            cwd: c_string(cwd.as_bytes().to_vec())?,
            stdout,
        })
    }
}

fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
}

/// The block the child reads, and writes its `errno` into if `execve` fails.
#[repr(C)]
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    devnull: *const libc::c_char,
    stdout: RawFd,
    parent: libc::pid_t,
    /// Where the child announces its process group to the attempt guard, or null.
    announce: *const AtomicI32,
    error: AtomicI32,
}

const STACK_SIZE: usize = 64 * 1024;

/// Starts the child in a new process group (its pid is the group id) and returns its
/// pid. The child is not reaped here. With `announce` (the slot's attempt-guard
/// cell, [`crate::worker::guard`]), the child stores its group id there itself
/// before it executes the command, so the guard knows the group before any process
/// of the attempt can fork; if the spawn fails the cell is cleared again.
pub fn spawn(request: &SpawnRequest, announce: Option<&AtomicI32>) -> io::Result<libc::pid_t> {
    let argv = null_terminated(&request.argv);
    let envp = null_terminated(&request.envp);
    let args = ChildArgs {
        program: request.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: request.cwd.as_ptr(),
        devnull: c"/dev/null".as_ptr(),
        stdout: request.stdout,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        announce: announce.map_or(std::ptr::null(), |cell| cell as *const AtomicI32),
        error: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; STACK_SIZE];
    // The stack grows down; keep the top 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + STACK_SIZE) & !15;
    // SAFETY: the sigsets are valid to build and install; the previous mask is
    // restored right after clone returns. clone(CLONE_VM | CLONE_VFORK) suspends this
    // thread until the child has exec'd or exited, so `args`, `argv`, `envp` and
    // `stack` outlive every use the child makes of them. The child function upholds
    // the invariants in the module docs.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        // SIGCHLD stays open when nothing of ours handles it: a job that exits
        // while this thread spawns the next one is then dropped at once as
        // ignored; blocked, it would be handed to another thread of the worker,
        // woken only to discard it (DECISIONS §29). No handler means nothing of
        // the parent can run in the child.
        if has_no_handler(libc::SIGCHLD) {
            libc::sigdelset(&mut all, libc::SIGCHLD);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &args as *const ChildArgs as *mut libc::c_void,
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    let error = args.error.load(Ordering::Acquire);
    if error != 0 {
        if let Some(cell) = announce {
            cell.store(0, Ordering::Release);
        }
        reap(pid);
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(pid)
}

/// Whether `signal`'s disposition is the default or ignore (no handler installed).
fn has_no_handler(signal: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into a
    // struct owned by this frame.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && (current.sa_sigaction == libc::SIG_DFL || current.sa_sigaction == libc::SIG_IGN)
    }
}

/// The `char *const[]` form execve wants; valid while `strings` lives.
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A pidfd for the child `pid` (not yet reaped, so the pid is still ours): it
/// becomes readable when the child exits, which lets the worker sleep on its
/// children's exits and its other events in one `ppoll`. `None` where the kernel
/// has no `pidfd_open` (before Linux 5.3).
pub fn exit_fd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns; pidfds are close-on-exec.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the kernel reports about a reaped child.
pub struct Reaped {
    /// The raw wait status.
    pub status: i32,
    /// The child's resource usage, its own plus that of the descendants it waited
    /// for: what `show` reports as peak memory and CPU time.
    pub usage: Option<libc::rusage>,
}

/// Waits for `pid` and returns its wait status and resource usage (`wait4`).
pub fn reap(pid: libc::pid_t) -> Reaped {
    let mut status = 0;
    loop {
        // SAFETY: rusage is plain data; wait4 only writes the status integer and the
        // rusage struct, both owned by this frame.
        let (rc, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let rc = libc::wait4(pid, &mut status, 0, &mut usage);
            (rc, usage)
        };
        if rc >= 0 {
            return Reaped {
                status,
                usage: (rc == pid).then_some(usage),
            };
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Reaped {
                status,
                usage: None,
            };
        }
    }
}

/// Runs in the child, on its own stack, sharing the parent's memory.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's ChildArgs, alive while the parent is
    // suspended by CLONE_VFORK. Only async-signal-safe calls follow.
    unsafe {
        let args = &*(arg as *const ChildArgs);
        let fail = |args: &ChildArgs| -> libc::c_int {
            let errno = *libc::__errno_location();
            args.error.store(
                if errno == 0 { libc::EINVAL } else { errno },
                Ordering::Release,
            );
            libc::_exit(127)
        };
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(args);
        }
        // The worker may have died before prctl took effect.
        if libc::getppid() != args.parent {
            libc::_exit(137);
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(args);
        }
        // The group exists now: tell the guard, before anything of the job runs.
        // (glibc does not cache getpid, so this is the child's own pid.)
        if !args.announce.is_null() {
            (*args.announce).store(libc::getpid(), Ordering::Release);
        }
        // The worker handles or ignores these; the job must see the defaults.
        for signal in [
            libc::SIGPIPE,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGCHLD,
        ] {
            libc::signal(signal, libc::SIG_DFL);
        }
        let devnull = libc::open(args.devnull, libc::O_RDONLY);
        if devnull < 0 || libc::dup2(devnull, 0) < 0 {
            return fail(args);
        }
        if libc::dup2(args.stdout, 1) < 0 || libc::dup2(args.stdout, 2) < 0 {
            return fail(args);
        }
        if devnull > 2 {
            libc::close(devnull);
        }
        if libc::chdir(args.cwd) != 0 {
            return fail(args);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(args.program, args.argv, args.envp);
        fail(args)
    }
}
