//! Finding jobs by the start of their id (`Store::ids_with_prefix`), which every
//! command taking an id uses so people can type a few characters of one: both stores
//! compare ids byte by byte, treat `%` and `_` as plain characters, put an exact id
//! first and count what does not fit.

use queuectl::job::generate_id;
use queuectl::store::Store;
use queuectl::store::ids::IdMatches;

use crate::{conformance_test, enqueue};

fn find(store: &mut dyn Store, prefix: &str, limit: usize) -> IdMatches {
    store
        .ids_with_prefix(prefix, limit)
        .unwrap_or_else(|e| panic!("ids_with_prefix({prefix:?}): {e}"))
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

conformance_test!(ids_are_found_by_prefix_byte_for_byte, |stores| {
    let mut store = stores.open();
    enqueue(
        store.as_mut(),
        &[
            "abd",
            "ab",
            "abc",
            "ab%x",
            "ab_y",
            "a%",
            "b",
            "Ab",
            "é1",
            "é2",
            "\u{10FFFF}x",
        ],
    );
    let found = find(store.as_mut(), "ab", 10);
    assert_eq!(
        found,
        IdMatches {
            ids: owned(&["ab", "ab%x", "ab_y", "abc", "abd"]),
            total: 5
        },
        "in byte order, the exact id first, case-sensitive"
    );
    assert!(found.is_exact("ab"));
    let few = find(store.as_mut(), "ab", 2);
    assert_eq!(
        few,
        IdMatches {
            ids: owned(&["ab", "ab%x"]),
            total: 5
        },
        "the first `limit` ids and how many there are"
    );
    // `%` and `_` are characters, not LIKE wildcards.
    assert_eq!(find(store.as_mut(), "ab_", 10).ids, owned(&["ab_y"]));
    assert_eq!(find(store.as_mut(), "a%", 10).ids, owned(&["a%"]));
    assert_eq!(find(store.as_mut(), "abc", 10).ids, owned(&["abc"]));
    assert!(!find(store.as_mut(), "a", 10).is_exact("a"));
    assert_eq!(find(store.as_mut(), "a", 10).total, 6);
    assert_eq!(find(store.as_mut(), "é", 10).ids, owned(&["é1", "é2"]));
    assert_eq!(
        find(store.as_mut(), "\u{10FFFF}", 10).ids,
        owned(&["\u{10FFFF}x"])
    );
    assert_eq!(find(store.as_mut(), "z", 10), IdMatches::default());
    assert_eq!(find(store.as_mut(), "abcd", 10), IdMatches::default());
});

conformance_test!(generated_and_uuid_ids_are_found_by_their_start, |stores| {
    let mut store = stores.open();
    let generated = generate_id();
    // Ids from before generated ids were short: UUIDv7s, 36 characters.
    let old = [
        "01a21f60-4507-70e0-958f-583c22bed934",
        "01a21f60-4507-70e0-958f-583c22bed935",
    ];
    enqueue(store.as_mut(), &[generated.as_str(), old[0], old[1]]);
    assert_eq!(
        find(store.as_mut(), &generated, 5).ids,
        vec![generated.clone()]
    );
    let start = &generated[..4];
    assert!(find(store.as_mut(), start, 5).ids.contains(&generated));
    assert_eq!(find(store.as_mut(), "01a21f60-4507", 5).total, 2);
    assert_eq!(find(store.as_mut(), old[1], 5).ids, owned(&[old[1]]));
    assert_eq!(find(store.as_mut(), &old[0][..35], 5).total, 2);
});

conformance_test!(many_matches_are_counted_past_the_limit, |stores| {
    let mut store = stores.open();
    let ids: Vec<String> = (0..300).map(|i| format!("batch-{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    enqueue(store.as_mut(), &refs);
    let found = find(store.as_mut(), "batch-", 5);
    assert_eq!(
        found.ids,
        owned(&[
            "batch-000",
            "batch-001",
            "batch-002",
            "batch-003",
            "batch-004"
        ])
    );
    assert_eq!(found.total, 300);
    assert_eq!(find(store.as_mut(), "batch-2", 5).total, 100);
    assert_eq!(find(store.as_mut(), "batch-29", 5).total, 10);
});
