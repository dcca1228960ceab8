//! The ecosystem's conventions (issue 12): shell completions and manual pages
//! generated from the command line's own description, and help that lists the
//! options every command takes once, under their own heading.

use std::process::Command;

use crate::common::bin;

fn queuectl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("QUEUECTL_DB")
        .output()
        .expect("run queuectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_exist_for_every_shell_the_issue_names() {
    // What each shell's script says when it knows a subcommand and an option of it.
    let shells = [
        ("bash", "_queuectl"),
        ("zsh", "#compdef queuectl"),
        ("fish", "complete -c queuectl"),
        ("elvish", "edit:completion:arg-completer[queuectl]"),
        ("powershell", "Register-ArgumentCompleter"),
    ];
    for (shell, marker) in shells {
        let (code, stdout, stderr) = queuectl(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell} script lacks {marker:?}");
        assert!(stdout.contains("enqueue"), "{shell} completes subcommands");
        assert!(
            stdout.contains("priority"),
            "{shell} completes enqueue's options"
        );
    }
    let (code, _, stderr) = queuectl(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("possible values"), "{stderr}");
}

#[test]
fn man_prints_a_roff_page_and_writes_one_per_command() {
    let (code, stdout, stderr) = queuectl(&["man"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(".TH queuectl 1"), "{stdout}");
    assert!(stdout.contains("enqueue"), "lists the commands");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = queuectl(&["man", "--dir", path]);
    assert_eq!(code, 0, "{stderr}");
    for page in ["queuectl.1", "queuectl-enqueue.1", "queuectl-dlq-retry.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let enqueue = std::fs::read_to_string(dir.path().join("queuectl-enqueue.1")).expect("page");
    assert!(
        enqueue.contains("priority"),
        "the enqueue page lists its options"
    );

    let missing = dir.path().join("nope");
    let (code, _, stderr) = queuectl(&["man", "--dir", missing.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
}

#[test]
fn global_options_are_listed_once_under_their_own_heading() {
    for args in [
        &["--help"][..],
        &["enqueue", "--help"],
        &["dlq", "retry", "--help"],
    ] {
        let (code, stdout, _) = queuectl(args);
        assert_eq!(code, 0);
        assert_eq!(stdout.matches("Global options:").count(), 1, "{stdout}");
        assert_eq!(stdout.matches("--db <PATH|URL>").count(), 1, "{stdout}");
        let heading = stdout.find("Global options:").expect("heading");
        assert!(
            stdout.find("--db <PATH|URL>").expect("--db") > heading,
            "{stdout}"
        );
    }
}

#[test]
fn dlq_retry_help_mentions_all() {
    let (_, stdout, _) = queuectl(&["dlq", "retry", "--help"]);
    assert!(stdout.contains("--all"), "{stdout}");
}
