//! The job JSON of `enqueue '{...}'` and each line of `enqueue --file`
//! (`JobSpec::from_json`, then `JobSpec::validate`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use queuectl::job::MAX_RETRIES_LIMIT;
use queuectl::job::options::MAX_PRIORITY;
use queuectl::job::options::Start;
use queuectl::job::spec::JobSpec;
use serde_json::{Value, json};

use crate::{corpus_strings, fuzzed};

/// The directory `enqueue` ran in, for jobs without `cwd`.
const CWD: &str = "/work/here";

/// No panic, whatever the text; what parses is validated without panicking too,
/// and a validated job obeys the rules the store relies on.
fn check(text: &str) -> Result<(), TestCaseError> {
    let Ok(spec) = JobSpec::from_json(text) else {
        return Ok(());
    };
    if let Ok(job) = spec.validate(CWD) {
        prop_assert!(!job.id.is_empty() && job.id.len() <= 200);
        prop_assert!(!job.command.trim().is_empty() && !job.command.contains('\0'));
        prop_assert!(job.cwd.starts_with('/'));
        prop_assert!((-MAX_PRIORITY..=MAX_PRIORITY).contains(&job.priority));
        prop_assert!(
            job.max_retries
                .is_none_or(|n| (0..=MAX_RETRIES_LIMIT).contains(&n))
        );
        prop_assert!(job.timeout_ms.is_none_or(|ms| ms >= 1));
    }
    Ok(())
}

#[test]
fn the_corpus_parses_without_panicking() {
    for text in corpus_strings("job_json") {
        check(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

/// A valid job as JSON, field by field.
fn valid_job() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9][a-z0-9._/-]{0,30}",
        "[a-z][a-z0-9 |&;'\"$-]{0,40}",
        0..=MAX_RETRIES_LIMIT,
        -MAX_PRIORITY..=MAX_PRIORITY,
        1u64..=30 * 86_400_000,
        "[A-Za-z0-9_.-]{1,64}",
        prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,10}", "[^\u{0}]{0,20}", 0..4),
        "/[a-z/]{0,20}",
        prop::option::of("[a-z0-9][a-z0-9 ]{0,20}"),
        prop::collection::btree_set("[a-z0-9]{1,8}", 0..4),
    )
        .prop_map(
            |(id, command, retries, priority, timeout_ms, queue, env, cwd, unique, after)| {
                let mut job = json!({
                    "id": id, "command": command, "max_retries": retries,
                    "priority": priority, "timeout": format!("{timeout_ms}ms"),
                    "queue": queue, "env": env, "cwd": cwd,
                    "after": after.into_iter().collect::<Vec<_>>(),
                });
                if let Some(key) = unique {
                    job["unique_key"] = key.into();
                }
                job
            },
        )
}

/// A value of another JSON type than the field takes.
fn wrong_value(field: &str) -> Vec<Value> {
    let text = || json!("7");
    let number = || json!(7);
    match field {
        "id" | "command" | "queue" | "unique_key" | "cwd" | "run_at" => {
            vec![number(), json!(true), json!(["x"]), json!({"x": 1})]
        }
        "max_retries" | "priority" => vec![text(), json!(1.5), json!(true), json!([1])],
        "timeout" | "delay" => vec![json!(true), json!([1]), json!({"s": 1})],
        "after" => vec![text(), number(), json!([1])],
        "env" => vec![text(), json!(["A=1"]), json!({"A": 1})],
        _ => vec![],
    }
}

proptest! {
    #[test]
    fn any_text_parses_without_panicking(text in fuzzed(corpus_strings("job_json"))) {
        check(&text)?;
    }

    /// Any JSON value at all, in any field.
    #[test]
    fn any_json_in_any_field_is_checked(
        field in prop::sample::select(vec![
            "id", "command", "max_retries", "timeout", "priority", "run_at", "delay",
            "queue", "after", "unique_key", "env", "cwd",
        ]),
        value in any_json(),
    ) {
        let mut job = json!({"command": "true"});
        job[field] = value;
        check(&job.to_string())?;
    }

    /// A valid job reads back exactly as written, whatever the field order.
    #[test]
    fn a_valid_job_reads_back_as_written(job in valid_job()) {
        let spec = JobSpec::from_json(&job.to_string());
        prop_assert!(spec.is_ok(), "{} refused: {:?}", job, spec.err());
        let new = spec.unwrap_or_default().validate(CWD);
        prop_assert!(new.is_ok(), "{} refused: {:?}", job, new.err());
        let new = new.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(&new.id, job["id"].as_str().unwrap_or_default());
        prop_assert_eq!(&new.command, job["command"].as_str().unwrap_or_default());
        prop_assert_eq!(new.max_retries, job["max_retries"].as_i64());
        prop_assert_eq!(new.priority, job["priority"].as_i64().unwrap_or_default());
        let timeout = job["timeout"].as_str().unwrap_or_default();
        let read_timeout = new.timeout_ms.map(|ms| format!("{ms}ms"));
        prop_assert_eq!(read_timeout.as_deref(), Some(timeout));
        prop_assert_eq!(&new.queue, job["queue"].as_str().unwrap_or_default());
        prop_assert_eq!(&new.cwd, job["cwd"].as_str().unwrap_or_default());
        prop_assert_eq!(new.unique_key.as_deref(), job["unique_key"].as_str());
        let env: BTreeMap<String, String> =
            serde_json::from_value(job["env"].clone()).unwrap_or_default();
        prop_assert_eq!(new.env, Some(env));
        let after: Vec<String> = serde_json::from_value(job["after"].clone()).unwrap_or_default();
        prop_assert_eq!(new.after, after);
        prop_assert!(matches!(new.start, Start::Now));
    }

    /// A field of the wrong type, or one that does not exist, is an error: never
    /// ignored, never replaced by a default.
    #[test]
    fn a_wrong_or_unknown_field_is_refused(
        job in valid_job(),
        field in prop::sample::select(vec![
            "id", "command", "max_retries", "timeout", "priority", "run_at", "delay",
            "queue", "after", "unique_key", "env", "cwd",
        ]),
        pick in any::<prop::sample::Index>(),
        unknown in "[a-z_]{1,12}",
    ) {
        let wrong = wrong_value(field);
        let mut bad = job.clone();
        bad[field] = pick.get(&wrong).clone();
        let parsed = JobSpec::from_json(&bad.to_string()).and_then(|s| s.validate(CWD));
        prop_assert!(parsed.is_err(), "{} was accepted", bad);

        let known = ["id", "command", "max_retries", "timeout", "priority", "run_at",
            "delay", "queue", "after", "unique_key", "env", "cwd"];
        if !known.contains(&unknown.as_str()) {
            let mut extra = job;
            extra[unknown.as_str()] = json!(1);
            prop_assert!(JobSpec::from_json(&extra.to_string()).is_err(), "{} was accepted", extra);
        }
    }
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        fuzzed(corpus_strings("durations")).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
