//! `queuectl dashboard`: the page driven in a real headless Chromium (overview,
//! live output, retry with the token, no buttons without it, markup shown as text)
//! and the HTTP API and its protections checked with plain requests (foreign
//! origins, security headers, paging and errors), on both stores.
//!
//! A screenshot of the overview is written to `$QUEUECTL_SCREENSHOT` when set (the
//! README's `docs/dashboard.png`), never otherwise.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Env, assert_usage_error, wait_until};
use crate::web::{Browser, Dashboard, free_port};

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-token-0123456789";
/// Every button that acts on the store.
const ACTION_BUTTONS: &str =
    "button.retry, button.cancel, button.pause, button.resume, button.set-limit, #enqueue";

/// Enqueues a job that fails once with no retries and waits for it to be dead
/// (workers must be running). It succeeds when retried once `flag` exists.
fn dead_job(env: &Env, flag: &str) -> String {
    let id = env.enqueue_json(&json!({
        "command": format!("test -e {flag} || exit 3; echo ran"),
        "max_retries": 0,
    }));
    env.wait_state(&id, "dead", LONG);
    id
}

backend_test!(the_overview_loads_and_its_counts_follow_the_jobs, |env| {
    let dashboard = Dashboard::start(&mut env, None);
    let Some(browser) = Browser::start() else {
        return;
    };
    for i in 0..3 {
        env.enqueue_json(&json!({"command": format!("echo job {i}"), "queue": "emails"}));
    }
    env.enqueue_json(&json!({"command": "echo report", "queue": "reports"}));
    browser.goto(&dashboard.url("/"));
    browser.wait_text("#count-pending", LONG, |t| t == "4");
    assert_eq!(browser.text("#count-completed").as_deref(), Some("0"));
    assert!(
        browser
            .text("#overview-queues")
            .is_some_and(|t| t.contains("emails"))
    );

    env.spawn_workers(&["--count", "2"]);
    browser.wait_text("#count-completed", LONG, |t| t == "4");
    browser.wait_text("#count-pending", LONG, |t| t == "0");
    // The chart shows the attempts of the last hour, the hosts table the workers.
    browser.wait_text("#throughput-total", LONG, |t| t.starts_with("4 succeeded"));
    assert!(browser.count("#throughput rect") >= 60);
    browser.wait_text("#overview-hosts", LONG, |t| t.contains("2"));

    if let Some(path) = std::env::var_os("QUEUECTL_SCREENSHOT")
        && env.backend == crate::common::Backend::Sqlite
    {
        // A little history for the picture: one dead job, one still waiting.
        dead_job(&env, "never");
        env.enqueue_json(&json!({"command": "sleep 30", "queue": "reports", "delay": "1h"}));
        browser.wait_text("#count-dead", LONG, |t| t == "1");
        browser.wait_text("#throughput-total", LONG, |t| t.contains(", 1 failed"));
        std::fs::write(path, browser.screenshot()).expect("write the screenshot");
    }
});

backend_test!(
    a_job_page_shows_its_output_growing_and_markup_as_text,
    |env| {
        let dashboard = Dashboard::start(&mut env, None);
        let Some(browser) = Browser::start() else {
            return;
        };
        let command = "printf '<script>document.title=\"pwned\"</script><b>bold</b>\\n'; \
                   for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 1; done";
        let id = env.enqueue_json(&json!({ "command": command }));
        env.spawn_workers(&[]);
        browser.goto(&dashboard.url(&format!("/#/job/{id}")));
        // Output shipped while the job runs appears, then grows.
        let early = browser.wait_text("#job-output", LONG, |t| t.contains("line 2"));
        assert_ne!(env.state(&id), "completed", "seen while it ran: {early}");
        let later = browser.wait_text("#job-output", LONG, |t| t.contains("line 8"));
        assert!(later.len() > early.len() && later.starts_with(early.trim_end()));
        env.wait_state(&id, "completed", LONG);

        // The markup it printed is text: shown verbatim, never run or parsed.
        assert!(later.starts_with("<script>document.title=\"pwned\"</script><b>bold</b>"));
        assert_eq!(browser.count("#job-output script"), 0);
        assert_eq!(browser.count("#job-output b"), 0);
        let command_shown = browser.wait_text("#job-command", LONG, |t| !t.is_empty());
        assert_eq!(command_shown, command);
        let title = browser
            .rt
            .block_on(browser.client().title())
            .expect("title");
        assert_eq!(title, "queuectl dashboard");
        // The attempts table has the finished attempt.
        browser.wait_text("#attempts", LONG, |t| t.contains("succeeded"));
    }
);

backend_test!(with_the_token_pressing_retry_on_a_dead_job_runs_it, |env| {
    let dashboard = Dashboard::start(&mut env, Some(TOKEN));
    env.spawn_workers(&[]);
    let id = dead_job(&env, "flag");
    let Some(browser) = Browser::start() else {
        return;
    };
    browser.goto(&dashboard.url("/#/dlq"));
    let row = format!("tr[data-id=\"{id}\"]");
    browser.wait_text(&row, LONG, |t| t.contains(&id));
    // Not signed in yet: no buttons, a sign-in form.
    assert_eq!(browser.count("button.retry"), 0);
    browser.type_into("#token", TOKEN);
    browser.click("#login");
    browser.wait_text("#session", LONG, |t| t.contains("signed in"));
    wait_until("the retry button", LONG, || {
        browser.count(&format!("{row} button.retry")) == 1
    });
    std::fs::write(env.file("flag"), "").expect("create the flag");
    browser.click(&format!("{row} button.retry"));
    let job = env.wait_state(&id, "completed", LONG);
    assert_eq!(job["attempts"], 1, "retry resets the attempts: {job}");
    // The list follows: the job leaves the dead letter queue.
    wait_until("the job to leave the DLQ page", LONG, || {
        browser.count(&row) == 0
    });
});

backend_test!(
    without_the_token_the_buttons_are_absent_and_actions_refused,
    |env| {
        let dashboard = Dashboard::start(&mut env, None);
        env.spawn_workers(&[]);
        let id = dead_job(&env, "flag");
        std::fs::write(env.file("flag"), "").expect("create the flag");
        if let Some(browser) = Browser::start() {
            browser.goto(&dashboard.url("/#/dlq"));
            let row = format!("tr[data-id=\"{id}\"]");
            browser.wait_text(&row, LONG, |t| t.contains(&id));
            browser.wait_text("#read-only", LONG, |t| t == "read-only");
            assert_eq!(browser.count(ACTION_BUTTONS), 0, "no action buttons");
            assert_eq!(browser.count("#token"), 0, "no sign-in form");
            browser.goto(&dashboard.url(&format!("/#/job/{id}")));
            browser.wait_text("#job-command", LONG, |t| t.contains("exit 3"));
            assert_eq!(browser.count(ACTION_BUTTONS), 0);
            browser.goto(&dashboard.url("/#/queues"));
            browser.wait_text("#queue-list", LONG, |t| t.contains("default"));
            assert_eq!(browser.count(ACTION_BUTTONS), 0);
            assert_eq!(browser.count("#queue-list button"), 0);
            browser.goto(&dashboard.url("/#/jobs"));
            browser.wait_text("#job-list", LONG, |t| t.contains(&id));
            assert_eq!(browser.count(ACTION_BUTTONS), 0);
            assert_eq!(browser.count("#enqueue-command"), 0, "no enqueue form");
        }
        // The API refuses every action, whatever token is sent.
        let token = [
            ("X-Queuectl-Token", TOKEN),
            ("Content-Type", "application/json"),
        ];
        let posts = [
            (format!("/api/v1/jobs/{id}/retry"), ""),
            (format!("/api/v1/jobs/{id}/cancel"), ""),
            ("/api/v1/queues/default/pause".to_owned(), ""),
            ("/api/v1/jobs".to_owned(), r#"{"command":"echo sneaky"}"#),
            ("/api/v1/login".to_owned(), r#"{"token":"anything"}"#),
        ];
        for (path, body) in &posts {
            let answer = dashboard.request("POST", path, &token, body);
            assert_eq!(answer.status, 403, "POST {path}: {}", answer.body);
            assert!(
                answer.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("read-only"))
            );
        }
        assert_eq!(env.state(&id), "dead");
        assert_eq!(env.status()["total"], 1, "nothing was enqueued");
        assert_eq!(
            dashboard.api("session"),
            json!({"actions": false, "signed_in": false})
        );
    }
);

backend_test!(a_request_from_a_foreign_origin_is_refused, |env| {
    let dashboard = Dashboard::start(&mut env, Some(TOKEN));
    env.spawn_workers(&[]);
    let id = dead_job(&env, "flag");
    std::fs::write(env.file("flag"), "").expect("create the flag");
    let retry = format!("/api/v1/jobs/{id}/retry");
    let own = dashboard.url("");
    for foreign in [
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
    ] {
        let mut headers = foreign.clone();
        headers.push(("X-Queuectl-Token", TOKEN));
        let answer = dashboard.request("POST", &retry, &headers, "");
        assert_eq!(answer.status, 403, "{foreign:?}: {}", answer.body);
        assert!(
            answer.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("cross-site"))
        );
        // Signing in from another site is refused too.
        let login = dashboard.request(
            "POST",
            "/api/v1/login",
            &foreign,
            &json!({"token": TOKEN}).to_string(),
        );
        assert_eq!(login.status, 403);
        assert!(login.header("Set-Cookie").is_none());
    }
    assert_eq!(env.state(&id), "dead");
    // Without the token, or with a wrong one: refused as well.
    let same = [("Origin", own.as_str())];
    assert_eq!(dashboard.request("POST", &retry, &same, "").status, 403);
    let wrong = [("Origin", own.as_str()), ("X-Queuectl-Token", "nope")];
    assert_eq!(dashboard.request("POST", &retry, &wrong, "").status, 403);
    assert_eq!(env.state(&id), "dead");

    // The page's way: sign in from the same origin, then act with the cookie.
    let login = dashboard.request(
        "POST",
        "/api/v1/login",
        &same,
        &json!({"token": TOKEN}).to_string(),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login
        .header("Set-Cookie")
        .expect("a session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie never holds the token");
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let with_cookie = [("Origin", own.as_str()), ("Cookie", session.as_str())];
    let answer = dashboard.request("POST", &retry, &with_cookie, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"retried": [id]}));
    env.wait_state(&id, "completed", LONG);
});

backend_test!(every_response_carries_the_security_headers, |env| {
    let dashboard = Dashboard::start(&mut env, Some(TOKEN));
    let index = dashboard.get("/");
    assert!(!index.body.contains("<script>"), "no inline script");
    assert!(index.body.contains(r#"<script src="/app.js""#));
    let answers = [
        index,
        dashboard.get("/app.js"),
        dashboard.get("/style.css"),
        dashboard.get("/metrics"),
        dashboard.get("/api/v1/overview"),
        dashboard.get("/api/v1/jobs/nope"),
        dashboard.get("/nope"),
        dashboard.request("POST", "/api/v1/jobs", &[], "{}"),
    ];
    for answer in &answers {
        let csp = answer.header("Content-Security-Policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(answer.header("Referrer-Policy"), Some("no-referrer"));
        assert_eq!(answer.header("X-Frame-Options"), Some("DENY"));
    }
    assert!(
        answers[1]
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/javascript"))
    );
    assert!(answers[3].body.contains("# TYPE queuectl_jobs gauge"));
    // A request naming another host (DNS rebinding) is refused on loopback.
    let rebound = dashboard.request("GET", "/api/v1/overview", &[("Host", "evil.example")], "");
    assert_eq!(rebound.status, 421);
});

backend_test!(the_api_pages_filters_and_answers_errors_as_json, |env| {
    let dashboard = Dashboard::start(&mut env, Some(TOKEN));
    let ids: Vec<String> = (0..7)
        .map(|i| {
            env.enqueue_json(&json!({
                "id": format!("job-{i}"),
                "command": format!("echo {i}"),
                "queue": if i % 2 == 0 { "a" } else { "b" },
            }))
        })
        .collect();
    let page = dashboard.api("jobs?limit=3");
    let listed: Vec<&str> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listed, ["job-6", "job-5", "job-4"], "newest first");
    assert_eq!(
        (page["total"].clone(), page["more"].clone()),
        (json!(7), json!(true))
    );
    let last = dashboard.api("jobs?limit=3&offset=6");
    assert_eq!(last["jobs"].as_array().map(Vec::len), Some(1));
    assert_eq!(last["more"], false);
    let queue_a = dashboard.api("jobs?queue=a&state=pending");
    assert_eq!(queue_a["total"], 4);
    assert!(
        queue_a["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .all(|j| j["queue"] == "a")
    );
    let prefix = dashboard.api("jobs?prefix=job-3");
    assert_eq!(prefix["jobs"][0]["id"], "job-3");
    assert_eq!(prefix["total"], 1);
    // The CLI's shapes: a job as `show --json` has it.
    let shown = env.job(&ids[0]);
    let job = dashboard.api("jobs/job-0");
    for key in ["id", "command", "state", "queue", "created_at", "attempts"] {
        assert_eq!(job[key], shown[key], "{key}");
    }
    assert_eq!(job["history"], json!([]));
    let overview = dashboard.api("overview");
    assert_eq!(overview["counts"]["pending"], env.status()["pending"]);
    assert_eq!(overview["counts"]["total"], 7);
    assert_eq!(overview["queues"].as_array().map(Vec::len), Some(2));
    let light = dashboard.api("overview?queues=0");
    assert!(light.get("queues").is_none() && light["counts"] == overview["counts"]);

    // Actions with the token header (no Origin: not a browser).
    let token = [("X-Queuectl-Token", TOKEN)];
    let paused = dashboard.request("POST", "/api/v1/queues/b/pause", &token, "");
    assert_eq!(
        (paused.status, paused.json()["paused"].clone()),
        (200, json!(true))
    );
    let limited = dashboard.request(
        "POST",
        "/api/v1/queues/a/concurrency",
        &token,
        r#"{"limit":2}"#,
    );
    assert_eq!(limited.json()["concurrency"], 2);
    let created = dashboard.request(
        "POST",
        "/api/v1/jobs",
        &token,
        r#"{"command":"echo hi","queue":"a"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let new_id = created.json()["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(env.state(&new_id), "pending");
    let cancelled = dashboard.request("POST", &format!("/api/v1/jobs/{new_id}/cancel"), &token, "");
    assert_eq!(
        cancelled.json(),
        json!({"cancelled": [{"id": new_id, "state": "cancelled"}]})
    );

    // Errors: a status and {"error": "..."}.
    let errors: [(&str, &str, &str, u16); 7] = [
        ("GET", "/api/v1/jobs?limit=0", "", 400),
        ("GET", "/api/v1/jobs?state=bogus", "", 400),
        ("GET", "/api/v1/jobs?offset=x", "", 400),
        ("GET", "/api/v1/jobs/unknown", "", 404),
        ("GET", "/api/v1/nothing", "", 404),
        ("POST", "/api/v1/jobs", r#"{"comand":"typo"}"#, 400),
        ("POST", "/api/v1/jobs/job-1/retry", "", 409),
    ];
    for (method, path, body, status) in errors {
        let answer = dashboard.request(method, path, &token, body);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        let error: Value = answer.json();
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty() && !e.contains('\n')),
            "{error}"
        );
    }
    assert_eq!(env.status()["total"], 8);
});

#[test]
fn a_non_loopback_address_needs_a_token() {
    let env = Env::sqlite();
    let listen = format!("0.0.0.0:{}", free_port());
    let out = env.run(&["dashboard", "--listen", &listen]);
    assert_usage_error(&out, "without a token");
    let out = env.run(&["dashboard", "--listen", "not-an-address"]);
    assert_usage_error(&out, "--listen");
}

backend_test!(with_the_token_the_page_enqueues_and_pauses_queues, |env| {
    let dashboard = Dashboard::start(&mut env, Some(TOKEN));
    let Some(browser) = Browser::start() else {
        return;
    };
    browser.goto(&dashboard.url("/#/jobs"));
    browser.type_into("#token", TOKEN);
    browser.click("#login");
    browser.wait_text("#session", LONG, |t| t.contains("signed in"));
    wait_until("the enqueue form", LONG, || {
        browser.count("#enqueue-command") == 1
    });
    browser.type_into("#enqueue-command", "echo from the page");
    browser.type_into("#enqueue-queue", "web");
    browser.click("#enqueue");
    wait_until("the job to be stored", LONG, || env.status()["total"] == 1);
    let listed = env.json(&["list"]);
    assert_eq!(listed[0]["command"], "echo from the page");
    assert_eq!(listed[0]["queue"], "web");

    browser.goto(&dashboard.url("/#/queues"));
    let row = "tr[data-queue=\"web\"]";
    browser.wait_text(row, LONG, |t| t.contains("web"));
    browser.click(&format!("{row} button.pause"));
    wait_until("the queue to be paused", LONG, || {
        env.json(&["queue", "list"])[0]["paused"] == true
    });
    browser.wait_text(row, LONG, |t| t.contains("paused"));
    browser.click(&format!("{row} button.resume"));
    wait_until("the queue to be resumed", LONG, || {
        env.json(&["queue", "list"])[0]["paused"] == false
    });
});
