//! `enqueue --lines FILE|-`: one shell command per line, the input `xargs` and
//! `parallel` take, each line a job with the options given on the command line.
//!
//! Rules: a line is a shell command line as written (like `--command`); blank lines
//! and lines whose first non-blank character is `#` are skipped (a comment would be
//! a job that does nothing); a `\r` before the newline is dropped (files written on
//! Windows). All or nothing: a line that is not UTF-8 or holds a NUL byte refuses
//! the whole input, naming the line, before the store is opened.

use std::io::Read;

use crate::error::Failure;
use crate::job::{NewJob, generate_id, validate_command};

/// Reads `file` (`-`: stdin) into one job per command line, each `template` (the
/// validated options) with its own command and a generated id.
pub(super) fn read(file: &str, template: &NewJob) -> Result<Vec<NewJob>, Failure> {
    let bytes = read_all(file)?;
    let commands = commands(&bytes).map_err(|(number, why)| {
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
/// and what is wrong with it.
fn commands(bytes: &[u8]) -> Result<Vec<String>, (usize, String)> {
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
        commands.push(command);
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_is_a_command_and_blank_and_comment_lines_are_skipped() {
        let input =
            b"echo a\n\n   \n# a comment\n  #indented comment\r\necho 'b c' | wc -c\r\n\techo d";
        assert_eq!(
            commands(input),
            Ok(vec![
                "echo a".to_owned(),
                "echo 'b c' | wc -c".to_owned(),
                "\techo d".to_owned()
            ])
        );
        assert_eq!(commands(b""), Ok(vec![]));
        assert_eq!(commands(b"\n\n"), Ok(vec![]));
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let (number, why) = commands(b"echo a\necho \xff\n").expect_err("invalid UTF-8");
        assert_eq!(number, 2);
        assert!(why.contains("UTF-8"), "{why}");
        let (number, why) = commands(b"echo a\n\necho \0b\n").expect_err("a NUL byte");
        assert_eq!(number, 3);
        assert!(why.contains("NUL"), "{why}");
    }
}
