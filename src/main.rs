//! The `queuectl` binary: everything but process start-up lives in the library.
//!
//! `main` is a C entry point instead of Rust's `fn main`. Rust's start-up code reads
//! and parses `/proc/self/maps` to find the main thread's stack guard, and sets up a
//! signal stack for reporting stack overflows: ~0.1 ms, about 5% of a whole
//! `queuectl enqueue` call (issue #4). The parts of that start-up queuectl relies
//! on are done here instead; a stack overflow now ends in a plain SIGSEGV.
#![no_main]

use std::ffi::{c_char, c_int};

#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    prepare_process();
    // std reads the arguments itself at load time (glibc passes them to
    // initialisers); a panic exits 101, as from a Rust `fn main`.
    let code = std::panic::catch_unwind(|| queuectl::cli::main(std::env::args_os()));
    // Flushes stdout, like returning from a Rust `fn main`.
    std::process::exit(code.unwrap_or(101))
}

/// What Rust's start-up does that queuectl depends on.
fn prepare_process() {
    // A closed stdin, stdout or stderr would let the next file opened (a log, a
    // job's output file) take its number and receive what is meant for the
    // terminal: open /dev/null in its place, as Rust's start-up does.
    let mut standard = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes only the three pollfds passed in.
    if unsafe { libc::poll(standard.as_mut_ptr(), 3, 0) } != -1 {
        for closed in standard.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
            // SAFETY: a C string literal; open returns the lowest free descriptor,
            // which is this closed one since those before it are open by now.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            debug_assert!(fd == -1 || fd == closed.fd);
        }
    }
    // Writing to a closed pipe (`queuectl list | head`) must be an error that the
    // output code handles, not death by SIGPIPE. Jobs get the default back.
    // SAFETY: ignoring a signal installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
