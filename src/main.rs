//! The `queuectl` binary: everything but process start-up lives in the library.
//!
//! A plain Rust `fn main`: Rust's start-up already does what queuectl relies on.
//! Closed standard descriptors (0-2) are reopened on `/dev/null`, so the next file
//! opened (a log, a job's output file) cannot take their number and receive what is
//! meant for the terminal; SIGPIPE is ignored, so writing to a closed pipe
//! (`queuectl list | head -1`) is an error the output code handles, not death by
//! signal (jobs get the default back). A panic exits 101.

fn main() {
    // A worker's attempt guard is this binary re-executed (`worker::guard`).
    if queuectl::worker::guard::is_guard_invocation() {
        std::process::exit(queuectl::worker::guard::guard_main());
    }
    // `exit` flushes stdout, like returning from `main`.
    std::process::exit(queuectl::cli::main(std::env::args_os()))
}
