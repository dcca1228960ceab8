//! `config set | get | list`: the keys, their defaults, decimal and unit
//! handling, persistence, and bad keys or values refused without any change.

use serde_json::json;

backend_test!(defaults, |env| {
    env.ensure_store();
    assert_eq!(
        env.json(&["config", "list"]),
        json!({
            "max-retries": 3,
            "backoff-base": 2,
            "backoff-max": 3600,
            "lease-timeout": 10,
            "heartbeat-interval": 2,
            "output-limit": 1048576,
            "kill-grace": 5,
            "job-timeout": null,
            "retention": null,
        })
    );
    let table = env.ok(&["config", "list"]);
    for key in [
        "max-retries",
        "backoff-base",
        "backoff-max",
        "lease-timeout",
        "heartbeat-interval",
        "output-limit",
        "kill-grace",
        "job-timeout",
        "retention",
    ] {
        assert!(table.contains(key), "{table}");
    }
    assert_eq!(env.ok(&["config", "get", "max-retries"]).trim(), "3");
});

backend_test!(set_get_and_list_agree_and_persist, |env| {
    env.ok(&["config", "set", "max-retries", "5"]);
    env.ok(&["config", "set", "backoff-base", "1.5"]);
    env.ok(&["config", "set", "backoff-max", "90"]);
    env.ok(&["config", "set", "heartbeat-interval", "0.5"]);
    env.ok(&["config", "set", "lease-timeout", "3"]);
    env.ok(&["config", "set", "output-limit", "64KiB"]);
    env.ok(&["config", "set", "kill-grace", "1s"]);
    env.ok(&["config", "set", "job-timeout", "2m"]);
    env.ok(&["config", "set", "retention", "7d"]);
    assert_eq!(
        env.json(&["config", "list"]),
        json!({
            "max-retries": 5,
            "backoff-base": 1.5,
            "backoff-max": 90,
            "lease-timeout": 3,
            "heartbeat-interval": 0.5,
            "output-limit": 65536,
            "kill-grace": 1,
            "job-timeout": 120,
            "retention": 604800,
        })
    );
    assert_eq!(env.ok(&["config", "get", "backoff-base"]).trim(), "1.5");
    assert_eq!(
        env.ok(&["config", "get", "heartbeat-interval"]).trim(),
        "0.5"
    );
    assert_eq!(
        env.json(&["config", "get", "backoff-base"]),
        json!({"backoff-base": 1.5})
    );
    assert_eq!(
        env.json(&["config", "set", "backoff-base", "2.25"]),
        json!({"backoff-base": 2.25})
    );
});

backend_test!(decimals_and_units_are_normalised, |env| {
    for (key, input, stored) in [
        ("backoff-base", "1.50", json!(1.5)),
        ("backoff-base", "2.0", json!(2)),
        ("backoff-base", " 3 ", json!(3)),
        ("backoff-base", "1", json!(1)),
        ("backoff-max", "5m", json!(300)),
        ("backoff-max", "1h", json!(3600)),
        ("backoff-max", "2.5", json!(2.5)),
        ("heartbeat-interval", "500ms", json!(0.5)),
        ("lease-timeout", "30s", json!(30)),
    ] {
        env.ok(&["config", "set", key, input]);
        assert_eq!(
            env.json(&["config", "get", key])[key],
            stored,
            "{key} {input}"
        );
    }
});

backend_test!(bad_keys_and_values_change_nothing, |env| {
    env.ok(&["config", "set", "backoff-base", "3"]);
    env.enqueue("true");
    let before = env.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (&["config", "set", "retries", "3"], "retries"),
        (&["config", "set", "max_retries", "3"], "max_retries"),
        (&["config", "set", "", "3"], "key"),
        (&["config", "get", "nope"], "nope"),
        // The argument parser takes `-1` for a flag; after `--` it reaches the validator.
        (&["config", "set", "max-retries", "-1"], "-1"),
        (&["config", "set", "max-retries", "--", "-1"], "max-retries"),
        (&["config", "set", "max-retries", "1001"], "max-retries"),
        (&["config", "set", "max-retries", "2.5"], "max-retries"),
        (&["config", "set", "max-retries", "many"], "max-retries"),
        (&["config", "set", "max-retries", ""], "max-retries"),
        (&["config", "set", "backoff-base", "0.5"], "backoff-base"),
        (&["config", "set", "backoff-base", "0"], "backoff-base"),
        (
            &["config", "set", "backoff-base", "--", "-2"],
            "backoff-base",
        ),
        (&["config", "set", "backoff-base", "NaN"], "backoff-base"),
        (&["config", "set", "backoff-base", "inf"], "backoff-base"),
        (&["config", "set", "backoff-base", "1,5"], "backoff-base"),
        (&["config", "set", "backoff-base", "two"], "backoff-base"),
        (&["config", "set", "backoff-max", "--", "-1"], "backoff-max"),
        (&["config", "set", "backoff-max", "soon"], "backoff-max"),
        (&["config", "set", "lease-timeout", "0"], "lease-timeout"),
        (&["config", "set", "lease-timeout", "abc"], "lease-timeout"),
        // The heartbeat must stay at most half the lease timeout (10 s by default).
        (&["config", "set", "heartbeat-interval", "6"], "heartbeat"),
        (&["config", "set", "lease-timeout", "3"], "heartbeat"),
        (
            &["config", "set", "heartbeat-interval", "0"],
            "heartbeat-interval",
        ),
    ];
    for (args, needle) in cases {
        env.assert_refused(args, needle, &before);
    }
    // A missing value: the argument parser's own (two-line) message, still exit 2.
    assert_eq!(
        env.run(&["config", "set", "max-retries"]).status.code(),
        Some(2)
    );
    assert_eq!(env.snapshot(), before);
});
