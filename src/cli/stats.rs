//! `queuectl stats`: per queue and in total, what finished in a window (`--since`,
//! default 1h), the success rate, throughput, durations, pickup delays and the
//! backlog. The numbers come from [`crate::stats`]; this module parses the flags and
//! prints a table (one column per queue, the total first) or JSON.

use serde_json::{Map, Value, json};

use super::output::{age, one_line};
use super::{Context, printed};
use crate::duration;
use crate::error::{Failure, InputError};
use crate::job::options::validate_queue;
use crate::stats::{Report, Summary, summarize};
use crate::store::stats::StatsRequest;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    queuectl stats                      the last hour, every queue\n  \
    queuectl stats --since 15m --queue mail\n  \
    queuectl stats --since 7d --json")]
pub struct Args {
    /// The window: attempts and jobs that finished this long ago or later (30s,
    /// 15m, 1h, 7d)
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    since: String,

    /// Only this queue
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let since = duration::parse(&args.since)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            InputError::Invalid(format!("--since: {}", duration::expected(&args.since)))
        })?;
    let queue = args.queue.as_deref().map(validate_queue).transpose()?;
    let mut store = ctx.open_to_read()?;
    let raw = store.stats(&StatsRequest {
        window: since,
        queue: queue.clone(),
    })?;
    let report = summarize(&raw, since);
    let p = &ctx.printer;
    if p.json {
        return printed(p.json(&report_json(&report)));
    }
    let mut columns: Vec<&Summary> = Vec::new();
    if queue.is_none() {
        columns.push(&report.total);
    }
    columns.extend(report.queues.iter());
    if columns.is_empty() {
        // `--queue` names a queue with nothing to show: show its zeros.
        columns.push(&report.total);
    }
    let mut header = vec![String::new()];
    header.extend(columns.iter().map(|s| match &s.queue {
        Some(q) => one_line(q),
        None if queue.is_some() => queue.clone().unwrap_or_default(),
        None => "ALL".to_owned(),
    }));
    let rows: Vec<Vec<String>> = ROWS
        .iter()
        .map(|(label, cell)| {
            let mut row = vec![(*label).to_owned()];
            row.extend(columns.iter().map(|s| cell(s)));
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    printed(p.line(&format!(
        "Since {} ago (throughput: the last 1, 5 and 15 minutes)",
        duration::human(since)
    )))?;
    printed(p.table(&header, &rows))
}

type Cell = fn(&Summary) -> String;

/// The rows of the table: a label and how to print its cell.
const ROWS: &[(&str, Cell)] = &[
    ("completed", |s| s.completed.to_string()),
    ("failed attempts", |s| s.failed_attempts.to_string()),
    ("dead", |s| s.dead.to_string()),
    ("cancelled", |s| s.cancelled.to_string()),
    ("success rate", |s| {
        s.success_rate
            .map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
    }),
    ("throughput/s", |s| {
        let [a, b, c] = s.throughput_per_second;
        format!("{} {} {}", rate(a), rate(b), rate(c))
    }),
    ("duration p50", |s| ms(s.duration_p50_ms)),
    ("duration p95", |s| ms(s.duration_p95_ms)),
    ("duration max", |s| ms(s.duration_max_ms)),
    ("pickup p50", |s| ms(s.pickup_p50_ms)),
    ("pickup p95", |s| ms(s.pickup_p95_ms)),
    ("ready", |s| s.ready.to_string()),
    ("waiting (time)", |s| s.waiting_for_time.to_string()),
    ("waiting (after)", |s| {
        s.waiting_for_dependencies.to_string()
    }),
    ("oldest ready", |s| ms(s.oldest_ready_age_ms)),
];

fn ms(value: Option<i64>) -> String {
    value.map_or("-".into(), age)
}

/// A rate with two significant decimals at most: `0`, `0.05`, `12.3`, `1500`.
fn rate(per_second: f64) -> String {
    if per_second == 0.0 {
        "0".into()
    } else if per_second < 1.0 {
        format!("{per_second:.2}")
    } else if per_second < 100.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

/// The JSON document (README "Stats and metrics" describes it).
fn report_json(report: &Report) -> Value {
    json!({
        "since_seconds": report.since.as_secs_f64(),
        "total": summary_json(&report.total),
        "queues": report.queues.iter().map(summary_json).collect::<Vec<_>>(),
    })
}

fn summary_json(s: &Summary) -> Value {
    let mut o = Map::new();
    if let Some(q) = &s.queue {
        o.insert("queue".into(), json!(q));
    }
    o.insert("completed".into(), json!(s.completed));
    o.insert("failed_attempts".into(), json!(s.failed_attempts));
    o.insert("dead".into(), json!(s.dead));
    o.insert("cancelled".into(), json!(s.cancelled));
    o.insert("success_rate".into(), json!(s.success_rate));
    let [a, b, c] = s.throughput_per_second;
    o.insert("throughput_1m_per_second".into(), json!(a));
    o.insert("throughput_5m_per_second".into(), json!(b));
    o.insert("throughput_15m_per_second".into(), json!(c));
    o.insert("attempt_duration_p50_ms".into(), json!(s.duration_p50_ms));
    o.insert("attempt_duration_p95_ms".into(), json!(s.duration_p95_ms));
    o.insert("attempt_duration_max_ms".into(), json!(s.duration_max_ms));
    o.insert("pickup_delay_p50_ms".into(), json!(s.pickup_p50_ms));
    o.insert("pickup_delay_p95_ms".into(), json!(s.pickup_p95_ms));
    o.insert("ready".into(), json!(s.ready));
    o.insert("waiting_for_time".into(), json!(s.waiting_for_time));
    o.insert(
        "waiting_for_dependencies".into(),
        json!(s.waiting_for_dependencies),
    );
    o.insert("oldest_ready_age_ms".into(), json!(s.oldest_ready_age_ms));
    Value::Object(o)
}
