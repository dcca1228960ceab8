//! Log lines for people watching a worker: one line each, on stderr, with a UTC
//! timestamp. stdout stays reserved for command output (and pure JSON with `--json`).

use std::io::Write;

/// Prints an informational line.
pub fn info(message: &str) {
    line("", message);
}

/// Prints a warning.
pub fn warn(message: &str) {
    line("warning: ", message);
}

fn line(prefix: &str, message: &str) {
    let now = jiff::Timestamp::now().strftime("%H:%M:%S%.3f");
    // A closed stderr is no reason to stop working.
    let _ = writeln!(std::io::stderr().lock(), "{now} {prefix}{message}");
}
