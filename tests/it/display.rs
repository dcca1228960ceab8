//! Readable on a terminal: tables fit its width (counting CJK and emoji as two
//! columns) and are never cut when piped; times are local unless `--utc`; colour
//! follows `NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE` and `TERM`; a running job shows
//! its running attempt; `list` pages on a terminal and has `--last` and `--sort`.
//! Terminal cases run the real binary under a pseudo-terminal (`common::pty`).

use std::process::Command;
use std::time::Duration;

use unicode_width::UnicodeWidthStr;

use crate::common::*;

const PTY_TIMEOUT: Duration = Duration::from_secs(30);

/// `queuectl ARGS` in `env` under an 80-column pty with colour left to the
/// environment given in `vars` (`None` removes a variable).
fn on_terminal(env: &Env, args: &[&str], vars: &[(&str, Option<&str>)]) -> PtyOutput {
    let mut cmd: Command = env.cmd(args);
    cmd.env_remove("COLUMNS");
    for (name, value) in vars {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let out = run_in_pty(cmd, 80, PTY_TIMEOUT);
    assert_eq!(
        out.code,
        Some(0),
        "`queuectl {}`: {}",
        args.join(" "),
        out.text
    );
    out
}

/// Display width, skipping ANSI colour sequences.
fn columns(line: &str) -> usize {
    let mut plain = String::new();
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain.width()
}

/// Enqueues `n` jobs `echo job-I` (I from 1) in one `enqueue --file`; returns ids.
fn enqueue_many(env: &Env, n: usize) -> Vec<String> {
    let lines: Vec<String> = (1..=n)
        .map(|i| serde_json::json!({"command": format!("echo job-{i}")}).to_string())
        .collect();
    let file = env.file("jobs.jsonl");
    std::fs::write(&file, lines.join("\n")).expect("write the jobs file");
    let out = env.ok(&["enqueue", "--file", &file.to_string_lossy()]);
    let ids: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), n, "{out}");
    ids
}

/// The rows of a table (lines after the header that start with one of `ids`).
fn rows_of<'a>(text: &'a str, ids: &[String]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| ids.iter().any(|id| l.starts_with(id.as_str())))
        .collect()
}

backend_test!(tables_fit_the_terminal_and_are_whole_when_piped, |env| {
    let long = format!("echo {}", "abcdefghij".repeat(20));
    let wide = "echo 日本語のコマンドはとても長いです 🎉🎉🎉 and more text after the emoji, \
                and more after that, and then some more";
    let long_id = env.enqueue(&long);
    let wide_id = env.enqueue(wide);

    let out = on_terminal(&env, &["list"], &[]);
    for line in out.text.lines() {
        assert!(
            columns(line) <= 80,
            "wider than 80 columns: {line:?}\n{}",
            out.text
        );
    }
    let rows = rows_of(&out.text, &[long_id.clone(), wide_id.clone()]);
    assert_eq!(rows.len(), 2, "{}", out.text);
    assert!(
        rows[0].contains("echo abcdef") && rows[0].ends_with('…'),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains("echo 日本") && rows[1].ends_with('…'),
        "{}",
        rows[1]
    );

    // COLUMNS wins over the terminal's size.
    let mut cmd = env.cmd(&["list"]);
    cmd.env("COLUMNS", "60");
    let narrow = run_in_pty(cmd, 80, PTY_TIMEOUT);
    assert!(
        narrow.text.lines().all(|l| columns(l) <= 60),
        "{}",
        narrow.text
    );

    // Piped: nothing is cut, and the rows still line up.
    let piped = env.ok(&["list"]);
    assert!(piped.contains(&long), "{piped}");
    assert!(piped.contains(wide), "{piped}");
    assert!(!piped.contains('…'), "{piped}");
    let rows = rows_of(&piped, &[long_id, wide_id]);
    let command_at: Vec<usize> = rows
        .iter()
        .map(|r| columns(&r[..r.find("echo ").expect("the command")]))
        .collect();
    assert_eq!(command_at[0], command_at[1], "{piped}");
});

backend_test!(times_are_local_unless_utc_and_json_stays_utc, |env| {
    let id = env.enqueue("true");
    let tokyo = || {
        let mut cmd = env.cmd(&["show", &id]);
        cmd.env("TZ", "Asia/Tokyo");
        cmd
    };
    let json = tokyo().arg("--json").output().expect("show --json");
    let job: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let created_text = job["created_at"].as_str().expect("created_at").to_owned();
    let created = parse_time(&created_text); // RFC 3339 UTC, whatever TZ says
    let at = jiff::Timestamp::from_millisecond(created).expect("a time");
    let zone = jiff::tz::TimeZone::get("Asia/Tokyo").expect("tzdb");
    let local = at.to_zoned_datetime(zone).strftime("%H:%M:%S").to_string();
    let utc = at
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%H:%M:%S")
        .to_string();
    assert_ne!(local, utc);

    let shown = String::from_utf8(tokyo().output().expect("show").stdout).expect("UTF-8");
    let line = shown
        .lines()
        .find(|l| l.starts_with("created"))
        .expect("created");
    assert!(
        line.contains(&local) && !line.contains(&utc),
        "{line} (UTC {created_text})"
    );

    let shown =
        String::from_utf8(tokyo().arg("--utc").output().expect("show").stdout).expect("UTF-8");
    let line = shown
        .lines()
        .find(|l| l.starts_with("created"))
        .expect("created");
    assert!(
        line.contains(&format!("{utc}Z")),
        "{line} (UTC {created_text})"
    );

    // Tables too.
    let mut listed = env.cmd(&["list", "--utc"]);
    listed.env("TZ", "Asia/Tokyo");
    let text = String::from_utf8(listed.output().expect("list").stdout).expect("UTF-8");
    assert!(text.contains(&format!("{utc}Z")), "{text}");
});

backend_test!(colour_follows_the_environment, |env| {
    env.enqueue("true");
    let escape = '\u{1b}';
    let term = [("NO_COLOR", None), ("TERM", Some("xterm-256color"))];
    let coloured = on_terminal(&env, &["status"], &term);
    assert!(coloured.text.contains(escape), "{}", coloured.text);
    // A terminal without TERM is still a terminal.
    let unset = on_terminal(&env, &["status"], &[("NO_COLOR", None), ("TERM", None)]);
    assert!(unset.text.contains(escape), "{}", unset.text);

    for off in [
        ("NO_COLOR", Some("1")),
        ("CLICOLOR", Some("0")),
        ("TERM", Some("dumb")),
    ] {
        let mut vars = term.to_vec();
        vars.push(off);
        let plain = on_terminal(&env, &["status"], &vars);
        assert!(!plain.text.contains(escape), "{off:?}: {}", plain.text);
        assert!(plain.text.contains("pending"), "{}", plain.text);
    }
    // --color wins over the environment.
    let mut vars = term.to_vec();
    vars.push(("NO_COLOR", Some("1")));
    let forced = on_terminal(&env, &["--color", "always", "status"], &vars);
    assert!(forced.text.contains(escape), "{}", forced.text);

    // CLICOLOR_FORCE colours even a pipe; --color never still wins.
    let piped = env
        .cmd(&["status"])
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .expect("status");
    assert!(String::from_utf8_lossy(&piped.stdout).contains(escape));
    let never = env
        .cmd(&["--color", "never", "status"])
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .expect("status");
    assert!(!String::from_utf8_lossy(&never.stdout).contains(escape));
    // JSON is never coloured.
    let json = env
        .cmd(&["status", "--json"])
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .expect("status");
    serde_json::from_slice::<serde_json::Value>(&json.stdout).expect("plain JSON");
});

backend_test!(a_running_job_shows_its_running_attempt, |env| {
    env.ok(&["config", "set", "backoff-max", "0"]);
    // Fails the first time, then runs until the test ends.
    let command = "if [ -e ran-once ]; then sleep 60; else touch ran-once; exit 1; fi";
    let id = env.enqueue(command);
    env.spawn_workers(&[]);
    wait_until("the second attempt to run", Duration::from_secs(30), || {
        let job = env.job(&id);
        job["state"] == "processing" && job["attempts"] == 1
    });

    let job = env.job(&id);
    assert_eq!(job["current_attempt"], 2, "{job}");
    assert_eq!(job["finished_at"], serde_json::Value::Null, "{job}");
    assert_eq!(job["exit_code"], serde_json::Value::Null, "{job}");
    let started = parse_time(job["started_at"].as_str().expect("started_at"));
    let previous = &job["history"][0];
    assert_eq!(previous["exit_code"], 1, "{job}");
    assert!(parse_time(previous["finished_at"].as_str().expect("finished")) <= started);

    let show = env.ok(&["show", &id]);
    assert!(show.contains("attempt 2 running"), "{show}");
    assert!(!show.lines().any(|l| l.starts_with("finished")), "{show}");
    assert!(!show.lines().any(|l| l.starts_with("exit code")), "{show}");
    let previous = show
        .lines()
        .find(|l| l.starts_with("previous"))
        .expect("previous");
    assert!(
        previous.contains("failed") && previous.contains("exit code 1"),
        "{show}"
    );
    assert!(
        show.lines()
            .any(|l| l.starts_with("2 ") && l.contains("running")),
        "the attempts table has the running attempt: {show}"
    );

    let list = env.ok(&["list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("the job's row");
    assert!(row.contains("attempt 2 running"), "{list}");
});

backend_test!(list_last_and_sort, |env| {
    let ids = enqueue_many(&env, 5);
    env.ok(&[
        "enqueue",
        "--command",
        "echo urgent",
        "--priority",
        "9",
        "--id",
        "urgent",
    ]);
    env.ok(&[
        "enqueue",
        "--command",
        "echo low",
        "--priority",
        "-3",
        "--id",
        "low",
    ]);

    // The newest N, newest last.
    let last: Vec<serde_json::Value> = env
        .json(&["list", "--last", "3"])
        .as_array()
        .expect("array")
        .clone();
    let names: Vec<&str> = last
        .iter()
        .map(|j| j["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, [ids[4].as_str(), "urgent", "low"]);
    let table = env.ok(&["list", "--last", "2"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(
        rows.len() == 2 && rows[0].starts_with("urgent") && rows[1].starts_with("low"),
        "{table}"
    );

    // Ascending: the highest priority is last, the lowest first.
    let sorted = env.json(&["list", "--sort", "priority"]);
    let sorted: Vec<&str> = sorted
        .as_array()
        .expect("array")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(sorted.first(), Some(&"low"));
    assert_eq!(sorted.last(), Some(&"urgent"));
    assert_eq!(sorted.len(), 7);
    let top = env.json(&["list", "--sort", "priority", "--last", "1"]);
    assert_eq!(top[0]["id"], "urgent");

    let before = env.snapshot();
    env.assert_refused(&["list", "--limit", "2", "--last", "2"], "--last", &before);
    env.assert_refused(&["list", "--sort", "colour"], "colour", &before);
});

backend_test!(a_terminal_gets_a_page_and_a_pipe_everything, |env| {
    let ids = enqueue_many(&env, 130);
    let out = on_terminal(&env, &["list"], &[]);
    let rows = rows_of(&out.text, &ids);
    assert_eq!(rows.len(), 50, "{}", out.text);
    // The newest 50, newest last.
    assert!(rows[0].starts_with(&ids[80]), "{}", out.text);
    assert!(rows[49].starts_with(&ids[129]), "{}", out.text);
    let last_line = out.text.lines().last().expect("a line");
    assert!(
        last_line.contains("80 more jobs") && last_line.contains("--all"),
        "{}",
        out.text
    );

    let all = on_terminal(&env, &["list", "--all"], &[]);
    assert_eq!(rows_of(&all.text, &ids).len(), 130, "{}", all.text);
    assert!(!all.text.contains("more jobs"));

    let piped = env.ok(&["list"]);
    assert_eq!(rows_of(&piped, &ids).len(), 130);
    assert!(!piped.contains("more jobs"));

    // A state's page counts that state's jobs only.
    let pending = on_terminal(&env, &["list", "--state", "pending"], &[]);
    assert_eq!(rows_of(&pending.text, &ids).len(), 50);
    assert!(pending.text.contains("80 more jobs"), "{}", pending.text);
});

backend_test!(wait_draws_its_progress_on_a_terminal, |env| {
    let ids: Vec<String> = (0..3).map(|_| env.enqueue("sleep 0.3")).collect();
    env.spawn_workers(&[]);
    let mut args = vec!["wait"];
    args.extend(ids.iter().map(String::as_str));
    let out = on_terminal(&env, &args, &[]);
    // The bar: done/total, dead and cancelled, the rate and the time left.
    assert!(
        out.text.contains("/3 done, 0 dead, 0 cancelled"),
        "{}",
        out.text
    );
    assert!(out.text.contains(" jobs/s, ETA "), "{}", out.text);
    assert!(
        out.text
            .contains("Finished: 3 jobs (3 completed, 0 dead, 0 cancelled)"),
        "{}",
        out.text
    );
});
