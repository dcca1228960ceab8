//! A store that does not exist yet: opened to read, it is reported missing and
//! nothing is created (no file beside it, no schema); opened to write, it is
//! created, and from then on readers open it.

use queuectl::error::StoreError;

use crate::{Backend, TestStore};

fn a_reader_never_creates_a_store(backend: Backend) {
    let Some(stores) = TestStore::unopened(backend) else {
        return;
    };
    for _ in 0..2 {
        match stores.try_open_to_read() {
            Err(StoreError::Missing(message)) => {
                assert!(message.contains("queuectl init"), "{message}");
            }
            Err(other) => panic!("expected Missing, got {other}"),
            Ok(_) => panic!("a missing store was opened to read"),
        }
        assert!(!stores.exists(), "opening to read created the store");
    }
    let mut writer = stores.open();
    assert!(stores.exists());
    writer.set_setting("max-retries", "4").expect("write");
    let mut reader = stores.try_open_to_read().expect("open the store to read");
    assert_eq!(
        reader
            .settings()
            .expect("settings")
            .get("max-retries")
            .map(String::as_str),
        Some("4")
    );
}

#[test]
fn sqlite() {
    a_reader_never_creates_a_store(Backend::Sqlite);
}

#[test]
fn postgres() {
    a_reader_never_creates_a_store(Backend::Postgres);
}
