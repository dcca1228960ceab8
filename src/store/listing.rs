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

/// Which jobs `list` reads, in what order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobListing {
    pub state: Option<JobState>,
    pub order: JobOrder,
    /// At most this many jobs.
    pub limit: Option<usize>,
    /// Keep the last `limit` jobs of the order rather than the first.
    pub from_end: bool,
}

/// How a backend's SQL differs for [`listing_sql`].
pub(crate) struct Dialect {
    /// The column list read, as the backend's `list` reads it.
    pub columns: &'static str,
    /// The placeholder of the limit (SQLite `?1`, -1 for none; PostgreSQL `$1`,
    /// NULL for none).
    pub limit: &'static str,
    /// The sort keys of the order waiting jobs run in on this backend.
    pub waiting_order: &'static [(&'static str, bool)],
}

/// The statement for `listing`; its only parameter is the limit. States are spelled
/// into it (they are fixed words), so each backend can pick the state's partial
/// index.
pub(crate) fn listing_sql(listing: &JobListing, dialect: &Dialect) -> String {
    let filter = listing
        .state
        .map_or_else(String::new, |s| format!(" WHERE state = '{}'", s.as_str()));
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
         ORDER BY {inner} LIMIT {limit}) ORDER BY {outer}",
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
}
