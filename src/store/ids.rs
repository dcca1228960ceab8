//! Finding jobs by the start of their id ([`crate::store::Store::ids_with_prefix`]):
//! what both backends answer, and the range both search.
//!
//! Invariants: ids compare byte by byte in both stores (SQLite's `BINARY`, PostgreSQL's
//! `COLLATE "C"`), which for UTF-8 is code point order, so the ids that start with a
//! prefix are exactly one range of the unique index on `id`: from the prefix itself
//! (inclusive) to [`prefix_end`] (exclusive). No `LIKE`, so `%` and `_` in an id mean
//! themselves, and the search reads only the matching index entries.

/// The ids that start with a prefix, as a store found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMatches {
    /// The first ids starting with the prefix, in byte order, at most the `limit`
    /// asked for. The prefix itself, when it is a whole id, is always first: it sorts
    /// before every longer id that starts with it.
    pub ids: Vec<String>,
    /// How many ids start with the prefix (counted only when there are more than
    /// `ids` holds).
    pub total: u64,
}

impl IdMatches {
    /// Builds the answer from the first `limit + 1`-at-most ids a store read, and a
    /// count it makes only when asked (when the ids did not fit).
    pub(crate) fn from_first(
        mut ids: Vec<String>,
        limit: usize,
        count: impl FnOnce() -> crate::store::Result<u64>,
    ) -> crate::store::Result<IdMatches> {
        if ids.len() <= limit {
            let total = ids.len() as u64;
            return Ok(IdMatches { ids, total });
        }
        ids.truncate(limit);
        Ok(IdMatches {
            ids,
            total: count()?,
        })
    }

    /// Whether `prefix` is itself a job's whole id (which wins over longer ids that
    /// start with it).
    pub fn is_exact(&self, prefix: &str) -> bool {
        self.ids.first().is_some_and(|id| id == prefix)
    }
}

/// The smallest string greater than every string that starts with `prefix`: the
/// exclusive end of the range of ids starting with it. `None` when there is no such
/// string (an empty prefix, or one made only of U+10FFFF): the range is open-ended.
///
/// It is `prefix` with its last character replaced by the next one (U+D7FF is
/// followed by U+E000, surrogates being no characters); a last character of
/// U+10FFFF is dropped and the one before it is stepped instead.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `id` is in the range `[prefix, prefix_end(prefix))`.
    fn in_range(id: &str, prefix: &str) -> bool {
        id >= prefix && prefix_end(prefix).is_none_or(|end| id < end.as_str())
    }

    #[test]
    fn the_range_holds_exactly_the_ids_that_start_with_the_prefix() {
        let ids = [
            "",
            "a",
            "ab",
            "ab%",
            "ab_",
            "abc",
            "abd",
            "ab\u{10FFFF}",
            "ab\u{10FFFF}x",
            "ac",
            "b",
            "\u{D7FF}",
            "\u{D7FF}z",
            "\u{E000}",
            "é",
            "éa",
            "\u{10FFFF}",
            "\u{10FFFF}a",
            "01a21f60-4507-70e0-958f-583c22bed934",
            "01a21f60-4507-70e0-958f-583c22bed935",
        ];
        let prefixes = [
            "a",
            "ab",
            "ab%",
            "ab_",
            "abc",
            "ab\u{10FFFF}",
            "\u{D7FF}",
            "é",
            "\u{10FFFF}",
            "01a21f60-4507",
            "z",
        ];
        for prefix in prefixes {
            for id in ids {
                assert_eq!(
                    in_range(id, prefix),
                    id.starts_with(prefix),
                    "id {id:?}, prefix {prefix:?}, end {:?}",
                    prefix_end(prefix)
                );
            }
        }
    }

    #[test]
    fn the_end_steps_the_last_character() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn an_exact_id_is_first_and_ids_past_the_limit_are_counted() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let found = IdMatches::from_first(ids(&["ab", "abc"]), 5, || panic!("no count"));
        let found = found.expect("no store error");
        assert!(found.is_exact("ab"));
        assert!(!found.is_exact("a"));
        assert_eq!(found.total, 2);
        let found = IdMatches::from_first(ids(&["a1", "a2", "a3"]), 2, || Ok(40));
        assert_eq!(
            found.expect("no store error"),
            IdMatches {
                ids: ids(&["a1", "a2"]),
                total: 40
            }
        );
    }
}
