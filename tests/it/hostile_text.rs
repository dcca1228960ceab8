//! Terminal-escape injection (issue 15, defect 5): whatever a job's command or
//! output holds, and whatever a user types as an id, human-facing output shows
//! control characters visibly (ESC as `␛`, BEL as `␇`, bidi overrides as `\u{...}`)
//! and errors stay one line; JSON keeps the exact text.

use crate::common::*;

/// A command that prints a screen clear, a window title and a colour, and holds
/// an ESC and a right-to-left override in its own text.
const HOSTILE: &str = "printf '\\033[2J\\033]0;owned\\007'; echo '\u{1b}[31mred \u{202e}txt.exe'";

/// No raw control character a terminal would act on (newlines aside).
fn assert_inert(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
        .collect();
    assert!(bad.is_empty(), "{what} holds raw {bad:?}:\n{text}");
}

backend_test!(
    commands_outputs_and_ids_never_reach_the_terminal_raw,
    |env| {
        let id = env.enqueue_args(&["--command", HOSTILE]);
        let worker = env.run(&["worker", "start", "--burst"]);
        assert!(worker.status.success(), "{worker:?}");
        let log = String::from_utf8_lossy(&worker.stderr);
        assert_inert("the worker's log", &log);
        assert!(log.contains("\u{241b}[31mred"), "ESC shown as ␛: {log}");

        // `show` on a terminal: the command and the output tail, made visible.
        let mut cmd = env.cmd(&["show", &id]);
        cmd.env_remove("COLUMNS");
        let shown = run_in_pty(cmd, 80, std::time::Duration::from_secs(30));
        assert_eq!(shown.code, Some(0), "{}", shown.text);
        // Colour codes queuectl adds itself are the only escapes allowed.
        let plain: String = strip_sgr(&shown.text);
        assert_inert("show on a terminal", &plain);
        assert!(plain.contains("\u{241b}]0;owned\u{2407}"), "{plain}");
        assert!(plain.contains("\\u{202e}txt.exe"), "{plain}");

        // JSON keeps the exact text.
        let job = env.job(&id);
        assert_eq!(job["command"], HOSTILE);

        // An id typed with an escape and a newline: one line, shown visibly.
        let out = env.run(&["show", "nope\u{1b}[31m\nline2"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_inert("the error", &stderr);
        assert!(stderr.contains("nope\u{241b}[31m\u{2424}line2"), "{stderr}");
    }
);

/// `text` without the SGR colour sequences (`ESC [ ... m`) queuectl itself prints.
fn strip_sgr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

// Issue 15, defect 6: ids whose percent-encoding is longer than a file name may be
// (100 × `é`, 100 × `/`) keep their output: spool files are named by worker, not id.
backend_test!(ids_longer_than_a_file_name_keep_their_output, |env| {
    let accents = "é".repeat(100);
    let slashes = "/".repeat(100);
    for (id, word) in [(&accents, "accents"), (&slashes, "slashes")] {
        let job = serde_json::json!({"id": id, "command": format!("echo {word}")});
        env.enqueue_json(&job);
    }
    let worker = env.run(&["worker", "start", "--burst"]);
    assert!(worker.status.success(), "{worker:?}");
    assert_eq!(env.ok(&["logs", &accents]), "accents\n");
    assert_eq!(env.ok(&["logs", &slashes]), "slashes\n");
});
