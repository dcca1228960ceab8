//! What `list` asks of a store beyond a state and a limit: an order and which end
//! of it to keep ([`JobListing`]), and the one statement both backends build from it
//! ([`listing_sql`]).
//!
//! Invariants: the statement picks the `seq`s of the wanted jobs first (an inner
//! query that reads only the sort keys, so `--last 50` of 100,000 jobs reads the
//! full rows of 50), then reads those rows in the listing's order, oldest (or
//! smallest) first even when the end was kept. Every order ends with `seq`, so ties
//! always come out in creation order, the same on both stores.

use crate::job::JobState;

/// The order `list` shows jobs in (`--sort`). Every order is ascending, so the end
/// of a listing, which `--last N` keeps and which a terminal shows nearest the
/// prompt, holds the newest, the most recently updated or the highest priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobOrder {
    /// Creation order, except that waiting jobs listed by state (`pending`,
    /// `failed`) come in the order they will run.
    #[default]
    Natural,
    Created,
    Updated,
    Priority,
    /// Lifecycle order ([`JobState::ALL`]), then creation.
    State,
}

/// Which jobs `list` (and the dashboard's job lists) read, in what order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobListing {
    pub state: Option<JobState>,
    /// Only jobs of this queue (bound as a parameter, never spelled into SQL).
    pub queue: Option<String>,
    pub order: JobOrder,
    /// At most this many jobs.
    pub limit: Option<usize>,
    /// Skip this many jobs from the kept end first (the dashboard's pages). The
    /// inner query still reads only sort keys, so a deep page costs an index walk,
    /// not full rows.
    pub offset: usize,
    /// Keep the last `limit` jobs of the order rather than the first.
    pub from_end: bool,
}

impl JobListing {
    /// Whether the listing filters or skips beyond what `list`'s per-state
    /// statements do (they take only a state and a limit).
    pub(crate) fn is_plain(&self) -> bool {
        self.queue.is_none() && self.offset == 0
    }
}

/// How a backend's SQL differs for [`listing_sql`].
pub(crate) struct Dialect {
    /// The column list read, as the backend's `list` reads it.
    pub columns: &'static str,
    /// The placeholder of the limit (SQLite `?1`, -1 for none; PostgreSQL `$1`,
    /// NULL for none).
    pub limit: &'static str,
    /// The placeholder of the queue name, bound only when the listing has one
    /// (SQLite `?2`, PostgreSQL `$2`).
    pub queue: &'static str,
    /// The sort keys of the order waiting jobs run in on this backend.
    pub waiting_order: &'static [(&'static str, bool)],
}

/// The statement for `listing`; its parameters are the limit and, when the listing
/// has a queue, the queue name. States are spelled into it (they are fixed words),
/// so each backend can pick the state's partial index; the offset is a number.
pub(crate) fn listing_sql(listing: &JobListing, dialect: &Dialect) -> String {
    let mut conditions = Vec::new();
    if let Some(state) = listing.state {
        conditions.push(format!("state = '{}'", state.as_str()));
    }
    if listing.queue.is_some() {
        conditions.push(format!("queue = {}", dialect.queue));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let offset = if listing.offset > 0 {
        format!(" OFFSET {}", listing.offset)
    } else {
        String::new()
    };
    let keys: Vec<(String, bool)> = order_keys(listing, dialect);
    let render = |reverse: bool| -> String {
        keys.iter()
            .map(|(key, desc)| {
                if *desc != reverse {
                    format!("{key} DESC")
                } else {
                    key.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "SELECT {columns} FROM jobs WHERE seq IN (SELECT seq FROM jobs{filter} \
         ORDER BY {inner} LIMIT {limit}{offset}) ORDER BY {outer}",
        columns = dialect.columns,
        inner = render(listing.from_end),
        limit = dialect.limit,
        outer = render(false),
    )
}

/// The sort keys (expression, descending) of a listing, ending with `seq`.
fn order_keys(listing: &JobListing, dialect: &Dialect) -> Vec<(String, bool)> {
    let mut keys: Vec<(String, bool)> = match listing.order {
        JobOrder::Natural
            if matches!(listing.state, Some(JobState::Pending | JobState::Failed)) =>
        {
            return dialect
                .waiting_order
                .iter()
                .map(|(k, d)| ((*k).to_owned(), *d))
                .collect();
        }
        JobOrder::Natural | JobOrder::Created => Vec::new(),
        JobOrder::Updated => vec![("updated_at".to_owned(), false)],
        JobOrder::Priority => vec![("priority".to_owned(), false)],
        JobOrder::State => {
            let cases: String = JobState::ALL
                .iter()
                .enumerate()
                .map(|(i, s)| format!(" WHEN '{}' THEN {i}", s.as_str()))
                .collect();
            vec![(format!("CASE state{cases} ELSE 9 END"), false)]
        }
    };
    keys.push(("seq".to_owned(), false));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIALECT: Dialect = Dialect {
        columns: "id",
        limit: "?1",
        queue: "?2",
        waiting_order: &[("priority", true), ("seq", false)],
    };

    #[test]
    fn the_end_is_kept_by_reversing_the_inner_order_only() {
        let sql = listing_sql(
            &JobListing {
                from_end: true,
                limit: Some(5),
                ..JobListing::default()
            },
            &DIALECT,
        );
        assert_eq!(
            sql,
            "SELECT id FROM jobs WHERE seq IN (SELECT seq FROM jobs ORDER BY seq DESC \
             LIMIT ?1) ORDER BY seq"
        );
    }

    #[test]
    fn waiting_jobs_keep_their_run_order() {
        let sql = listing_sql(
            &JobListing {
                state: Some(JobState::Pending),
                from_end: true,
                ..JobListing::default()
            },
            &DIALECT,
        );
        assert!(sql.contains("WHERE state = 'pending' ORDER BY priority, seq DESC LIMIT"));
        assert!(sql.ends_with("ORDER BY priority DESC, seq"));
    }

    #[test]
    fn a_queue_is_bound_and_an_offset_skips_from_the_kept_end() {
        let sql = listing_sql(
            &JobListing {
                state: Some(JobState::Dead),
                queue: Some("q'; DROP TABLE jobs".into()),
                limit: Some(50),
                offset: 100,
                from_end: true,
                ..JobListing::default()
            },
            &DIALECT,
        );
        assert!(
            sql.contains(
                "WHERE state = 'dead' AND queue = ?2 ORDER BY seq DESC LIMIT ?1 OFFSET 100)"
            ),
            "{sql}"
        );
        assert!(!sql.contains("DROP"));
    }
}
