//! Recurring jobs: entries are added, listed, paused, resumed and removed; a due
//! entry is enqueued exactly once per tick however many workers fire at once; after
//! downtime it gets one catch-up run; an entry the store cannot read does not stop
//! the others.
//!
//! Ticks are made due by moving `next_run_at` into the past with plain SQL, so no
//! test waits for a clock.

use std::sync::Barrier;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use queuectl::cron::{CronJob, CronSchedule, SecondsField, run_key};
use queuectl::store::{CronEntry, NewCronEntry, Store};

use crate::conformance_test;

const MINUTE: i64 = 60_000;

/// How many store handles fire at the same tick.
const FIRING: usize = 8;

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

/// Entry `name` running `command` on `schedule` in UTC.
fn entry(name: &str, schedule: &str, command: &str) -> NewCronEntry {
    let job = CronJob {
        command: command.to_owned(),
        priority: Some(3),
        queue: Some("crons".to_owned()),
        cwd: "/".to_owned(),
        ..CronJob::default()
    };
    NewCronEntry {
        name: name.to_owned(),
        schedule: CronSchedule::parse(schedule, "UTC", SecondsField::Refused).expect("valid"),
        job: job.to_json().expect("valid job"),
    }
}

fn listed(store: &mut dyn Store, name: &str) -> Option<CronEntry> {
    let entries = store.cron_list().expect("cron list");
    entries.into_iter().find(|e| e.name == name)
}

/// The unique keys of every job, in enqueue order.
fn run_keys(store: &mut dyn Store) -> Vec<String> {
    let jobs = store.list(None, None).expect("list");
    jobs.into_iter().filter_map(|j| j.unique_key).collect()
}

/// Makes entry `name` due: its next tick becomes `tick`.
fn make_due(stores: &crate::TestStore, name: &str, tick: i64) {
    stores.raw().run(&format!(
        "UPDATE cron SET next_run_at = {tick} WHERE name = '{name}'"
    ));
}

/// A minute boundary `minutes` before now.
fn minutes_ago(minutes: i64) -> i64 {
    (now_ms() / MINUTE - minutes) * MINUTE
}

conformance_test!(
    entries_are_added_listed_paused_resumed_and_removed,
    |stores| {
        let mut store = stores.open();
        let before = now_ms();
        let added = store
            .cron_add(&entry("b-hourly", "@hourly", "echo b"))
            .expect("add")
            .expect("a new name is added");
        assert_eq!(added.schedule, "@hourly");
        assert_eq!(added.tz, "UTC");
        assert!(!added.paused);
        assert_eq!(added.last_run_at, None);
        assert!(added.next_run_at > before - 5_000, "{added:?}");
        assert!(added.next_run_at <= before + 3_600_000 + 5_000, "{added:?}");
        assert_eq!(added.next_run_at % 3_600_000, 0, "on the hour: {added:?}");
        let job: serde_json::Value = serde_json::from_str(&added.job).expect("job JSON");
        assert_eq!(job["command"], "echo b");

        // A name is taken once; the first entry is left as it was.
        let again = store.cron_add(&entry("b-hourly", "* * * * *", "echo other"));
        assert!(again.expect("add").is_none(), "a taken name adds nothing");
        store
            .cron_add(&entry("a-minute", "* * * * *", "echo a"))
            .expect("add")
            .expect("added");
        let mut other = stores.open();
        let names: Vec<String> = other
            .cron_list()
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a-minute", "b-hourly"], "listed by name");
        assert_eq!(listed(&mut *other, "b-hourly"), Some(added.clone()));

        let paused = other
            .cron_set_paused("a-minute", true)
            .expect("pause")
            .expect("known");
        assert!(paused.paused);
        // While paused its ticks pass; resuming skips them.
        make_due(stores, "a-minute", minutes_ago(30));
        let resumed = store
            .cron_set_paused("a-minute", false)
            .expect("resume")
            .expect("known");
        assert!(!resumed.paused);
        assert!(resumed.next_run_at > now_ms() - 5_000, "{resumed:?}");
        // Resuming an entry that runs changes nothing.
        let again = store.cron_set_paused("a-minute", false).expect("resume");
        assert_eq!(again, Some(resumed));

        assert!(store.cron_remove("a-minute").expect("remove"));
        assert!(!store.cron_remove("a-minute").expect("remove again"));
        assert!(listed(&mut *store, "a-minute").is_none());
        assert_eq!(
            store.cron_set_paused("a-minute", true).expect("pause"),
            None
        );
        assert!(
            run_keys(&mut *store).is_empty(),
            "adding entries enqueues nothing"
        );
    }
);

conformance_test!(nothing_due_writes_nothing_and_says_when, |stores| {
    let mut store = stores.open();
    let fired = store.cron_fire().expect("fire");
    assert_eq!(fired.next_due_in, None, "no entries, nothing to wait for");
    store
        .cron_add(&entry("later", "@hourly", "true"))
        .expect("add")
        .expect("added");
    let fired = store.cron_fire().expect("fire");
    assert!(fired.runs.is_empty());
    let wait = fired.next_due_in.expect("an entry is waiting");
    assert!(wait <= Duration::from_secs(3600), "{wait:?}");
    // A paused entry is neither fired nor waited for, due or not.
    store.cron_set_paused("later", true).expect("pause");
    make_due(stores, "later", minutes_ago(5));
    let fired = store.cron_fire().expect("fire");
    assert!(fired.runs.is_empty());
    assert_eq!(fired.next_due_in, None);
    assert!(run_keys(&mut *store).is_empty());
});

conformance_test!(concurrent_firing_enqueues_each_tick_once, |stores| {
    stores
        .open()
        .cron_add(&entry("e", "* * * * *", "echo e"))
        .expect("add")
        .expect("added");
    let mut handles: Vec<Box<dyn Store>> = (0..FIRING).map(|_| stores.open()).collect();
    // Each round makes another past tick due, so only the guard on next_run_at
    // (not the unique key of an earlier round's run) can keep a second copy out.
    let mut last_tick = None;
    for round in 1..=5 {
        let tick = minutes_ago(round * 10);
        last_tick = Some(tick);
        make_due(stores, "e", tick);
        let barrier = Barrier::new(FIRING);
        let runs: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = handles
                .iter_mut()
                .map(|store| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        store.cron_fire().expect("fire").runs
                    })
                })
                .collect();
            let all: Vec<_> = threads
                .into_iter()
                .flat_map(|t| t.join().expect("a firing thread"))
                .collect();
            for run in &all {
                assert_eq!(
                    (run.name.as_str(), run.tick, run.existing),
                    ("e", tick, false)
                );
            }
            all.len()
        });
        assert_eq!(
            runs, 1,
            "round {round}: {runs} workers enqueued tick {tick}"
        );
        let keys = run_keys(&mut *handles[0]);
        assert_eq!(
            keys.len(),
            usize::try_from(round).expect("small"),
            "{keys:?}"
        );
        assert_eq!(keys.last(), Some(&run_key("e", tick)), "{keys:?}");
    }
    let store = &mut *handles[0];
    let runs = store.list(None, None).expect("list");
    for run in &runs {
        assert_eq!(
            (run.command.as_str(), run.priority, run.queue.as_str()),
            ("echo e", 3, "crons")
        );
    }
    assert_eq!(listed(store, "e").expect("listed").last_run_at, last_tick);
});

conformance_test!(
    a_tick_whose_run_is_unfinished_is_not_enqueued_again,
    |stores| {
        let mut store = stores.open();
        store
            .cron_add(&entry("e", "* * * * *", "true"))
            .expect("add")
            .expect("added");
        let tick = minutes_ago(3);
        make_due(stores, "e", tick);
        let first = store.cron_fire().expect("fire").runs;
        assert_eq!(first.len(), 1);
        // Someone puts the entry back on the same tick (a restored backup, a clock
        // gone back): the run of that tick is still pending, so the unique key holds.
        make_due(stores, "e", tick);
        let second = store.cron_fire().expect("fire").runs;
        assert_eq!(second.len(), 1);
        assert!(second[0].existing, "{second:?}");
        assert_eq!(second[0].job_id, first[0].job_id);
        assert_eq!(run_keys(&mut *store), [run_key("e", tick)]);
    }
);

conformance_test!(
    after_downtime_one_catch_up_run_then_the_next_tick,
    |stores| {
        let mut store = stores.open();
        store
            .cron_add(&entry("e", "* * * * *", "true"))
            .expect("add")
            .expect("added");
        // Down for an hour: sixty ticks were missed.
        let missed = minutes_ago(60);
        make_due(stores, "e", missed);
        let before = now_ms();
        let fired = store.cron_fire().expect("fire");
        assert_eq!(fired.runs.len(), 1, "{fired:?}");
        assert_eq!(
            fired.runs[0].tick, missed,
            "the run stands for the oldest tick"
        );
        let wait = fired.next_due_in.expect("still scheduled");
        assert!(wait <= Duration::from_secs(60), "{wait:?}");
        let e = listed(&mut *store, "e").expect("listed");
        assert_eq!(e.last_run_at, Some(missed));
        assert!(e.next_run_at > before - 5_000, "moved past now: {e:?}");
        assert!(e.next_run_at <= before + MINUTE + 5_000, "{e:?}");
        assert_eq!(e.next_run_at % MINUTE, 0);
        // Caught up: nothing more until the next tick.
        assert!(store.cron_fire().expect("fire").runs.is_empty());
        assert_eq!(run_keys(&mut *store), [run_key("e", missed)]);
    }
);

conformance_test!(an_unreadable_entry_does_not_stop_the_others, |stores| {
    let mut store = stores.open();
    store
        .cron_add(&entry("good", "* * * * *", "true"))
        .expect("add")
        .expect("added");
    store
        .cron_add(&entry("bad", "* * * * *", "true"))
        .expect("add")
        .expect("added");
    // As if written by another release: a schedule this one cannot read.
    stores
        .raw()
        .run("UPDATE cron SET schedule = '* * * *' WHERE name = 'bad'");
    let tick = minutes_ago(2);
    make_due(stores, "good", tick);
    make_due(stores, "bad", tick);
    let before = now_ms();
    let fired = store.cron_fire().expect("fire");
    assert_eq!(fired.runs.len(), 1);
    assert_eq!(fired.runs[0].name, "good");
    assert_eq!(fired.broken.len(), 1);
    assert_eq!(fired.broken[0].0, "bad");
    let bad = listed(&mut *store, "bad").expect("listed");
    assert!(
        bad.next_run_at >= before + 3_500_000,
        "tried again later: {bad:?}"
    );
    assert_eq!(bad.last_run_at, None);
    assert_eq!(run_keys(&mut *store), [run_key("good", tick)]);
});
