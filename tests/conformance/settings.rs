//! Settings: stored values read back, from any connection, and are used by enqueue.

use crate::{conformance_test, enqueue, job};

conformance_test!(a_setting_reads_back_and_can_be_overwritten, |stores| {
    let mut store = stores.open();
    store.set_setting("max-retries", "7").expect("set");
    store.set_setting("backoff-base", "3").expect("set");
    let mut other = stores.open();
    let settings = other.settings().expect("settings");
    assert_eq!(settings.get("max-retries").map(String::as_str), Some("7"));
    assert_eq!(settings.get("backoff-base").map(String::as_str), Some("3"));

    store.set_setting("max-retries", "2").expect("overwrite");
    let settings = other.settings().expect("settings");
    assert_eq!(settings.get("max-retries").map(String::as_str), Some("2"));
    assert_eq!(settings.get("backoff-base").map(String::as_str), Some("3"));
});

conformance_test!(enqueue_gives_jobs_the_stored_max_retries, |stores| {
    let mut store = stores.open();
    store.set_setting("max-retries", "7").expect("set");
    enqueue(&mut *stores.open(), &["job"]);
    assert_eq!(job(&mut *store, "job").max_retries, 7);
});
