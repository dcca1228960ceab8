//! The black-box test suite: one binary (faster to link on small machines), one module
//! per capability. Tests written with `backend_test!` run against SQLite and, when
//! `QUEUECTL_TEST_POSTGRES_URL` is set, PostgreSQL: the conformance suite.

#[path = "../common/mod.rs"]
#[macro_use]
pub mod common;

mod attempt_guard;
mod bad_input;
mod bench;
mod concurrency;
mod config;
mod contention;
mod control;
mod conventions;
mod cron;
mod dashboard;
mod db_faults;
mod delays;
mod dependencies;
mod disk_full;
mod display;
mod dlq;
mod duty;
mod enqueue;
mod execution;
mod hostile_text;
mod ids_and_words;
mod job_env;
mod json_events;
mod lifecycle;
mod logs;
mod lost_replies;
mod multi_host;
mod postgres;
mod priorities;
mod queues;
mod read_only;
mod recovery;
mod retry;
mod schedule_transfer;
mod smoke;
mod stats;
mod store_files;
mod transfer;
mod unique;
mod web;
mod worker_control;
mod workers;
