//! `enqueue --lines FILE|-`: one shell command per line, the input `xargs` and
//! `parallel` take, each line a job with the options given on the command line.
//!
//! Rules: a line is a shell command line as written (like `--command`); blank lines
//! and lines whose first non-blank character is `#` are skipped (a comment would be
//! a job that does nothing); a `\r` before the newline is dropped (files written on
//! Windows). All or nothing: a line that is not UTF-8, holds a NUL byte or that
//! `/bin/sh` cannot parse (an unterminated quote: a job that would fail every
//! attempt) refuses the whole input, naming the line, before the store is opened.
//!
//! The syntax check costs nothing for ordinary lines: only a line whose quotes do
//! not balance by `shlex`'s simple rules is shown to `/bin/sh -n`, which decides, so
//! shell syntax `shlex` does not know (quotes nested in `$(...)`) is never refused.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::error::Failure;
use crate::job::{NewJob, generate_id, validate_command};

/// Reads `file` (`-`: stdin) into one job per command line, each `template` (the
/// validated options) with its own command and a generated id.
pub(super) fn read(file: &str, template: &NewJob) -> Result<Vec<NewJob>, Failure> {
    let bytes = read_all(file)?;
    let commands = commands(&bytes, shell_syntax_error).map_err(|(number, why)| {
        Failure::usage(format!(
            "{file}: line {number}: {why}; nothing was enqueued"
        ))
    })?;
    Ok(commands
        .into_iter()
        .map(|command| NewJob {
            id: generate_id(),
            command,
            ..template.clone()
        })
        .collect())
}

fn read_all(file: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let read = if file == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::read(file).map(|read| bytes = read)
    };
    read.map_err(|e| {
        Failure::usage(format!(
            "cannot read {file}: {e}; give a readable file with one shell command per line, or - for stdin"
        ))
    })?;
    Ok(bytes)
}

/// The command lines of `bytes`, in order; or the first bad line's number (from 1)
/// and what is wrong with it. `syntax` says what the shell finds wrong with a line,
/// if anything.
fn commands(
    bytes: &[u8],
    syntax: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, (usize, String)> {
    let mut commands = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw)
            .map_err(|_| (number, "not valid UTF-8; save the file as UTF-8".to_owned()))?;
        let text = line.trim_start();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let command = validate_command(line).map_err(|e| (number, e.to_string()))?;
        if let Some(error) = syntax(&command) {
            return Err((
                number,
                format!("/bin/sh cannot parse it ({error}); fix its quoting"),
            ));
        }
        commands.push(command);
    }
    Ok(commands)
}

/// What `/bin/sh` finds wrong with `line` as a command line, or `None`. Asks the
/// shell (`sh -n`: parse, run nothing) only when `shlex` finds the quotes
/// unbalanced; a shell that cannot be started is no reason to refuse a line.
fn shell_syntax_error(line: &str) -> Option<String> {
    if shlex::split(line).is_some() {
        return None;
    }
    let out = Command::new("/bin/sh")
        .args(["-n", "-c", line])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    if out.status.success() {
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
    // "/bin/sh: 1: Syntax error: Unterminated quoted string" (dash)
    let said = said.map(|l| l.strip_prefix("/bin/sh: ").unwrap_or(l));
    let said = said.map(|l| l.strip_prefix("1: ").unwrap_or(l));
    Some(super::super::output::visible(said.unwrap_or("a syntax error")).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_syntax_error(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn each_line_is_a_command_and_blank_and_comment_lines_are_skipped() {
        let input =
            b"echo a\n\n   \n# a comment\n  #indented comment\r\necho 'b c' | wc -c\r\n\techo d";
        assert_eq!(
            commands(input, no_syntax_error),
            Ok(vec![
                "echo a".to_owned(),
                "echo 'b c' | wc -c".to_owned(),
                "\techo d".to_owned()
            ])
        );
        assert_eq!(commands(b"", no_syntax_error), Ok(vec![]));
        assert_eq!(commands(b"\n\n", no_syntax_error), Ok(vec![]));
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let (number, why) =
            commands(b"echo a\necho \xff\n", no_syntax_error).expect_err("invalid UTF-8");
        assert_eq!(number, 2);
        assert!(why.contains("UTF-8"), "{why}");
        let (number, why) =
            commands(b"echo a\n\necho \0b\n", no_syntax_error).expect_err("a NUL byte");
        assert_eq!(number, 3);
        assert!(why.contains("NUL"), "{why}");
    }

    #[test]
    fn only_what_the_shell_cannot_parse_is_a_syntax_error() {
        for fine in [
            "echo hi",
            "echo \"it's\"",
            "echo hi # it's a comment",
            "echo \"$(echo \"it's\")\"",
            "echo trailing \\",
        ] {
            assert_eq!(shell_syntax_error(fine), None, "{fine}");
        }
        for bad in ["echo \"abc", "echo 'it"] {
            let error = shell_syntax_error(bad).unwrap_or_default();
            assert!(
                !error.is_empty() && !error.contains('\n'),
                "{bad}: {error:?}"
            );
        }
        let (number, why) =
            commands(b"echo a\necho 'b\n", shell_syntax_error).expect_err("unterminated");
        assert_eq!(number, 2);
        assert!(why.contains("/bin/sh cannot parse it"), "{why}");
    }
}
