//! The store contract on the embedded SQLite store, file-backed as
//! `handler serve` uses it.

mod support;

use std::sync::Arc;

use kraftd_billing::domain::ports::Store;
use kraftd_billing::store::SqliteStore;

async fn sqlite_store() -> Arc<dyn Store> {
    // The directory is kept for the test's lifetime by leaking its guard;
    // the OS temp cleaner reclaims it.
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(SqliteStore::open(&dir.join("billing.sqlite3")).unwrap())
}

store_contract_tests!(sqlite_store);

#[tokio::test]
async fn reopening_the_file_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let u = support::store_contract::user("persist@mail.io");
    {
        let s = SqliteStore::open(&path).unwrap();
        kraftd_billing::domain::ports::UserStore::create_user(&s, &u)
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let found = kraftd_billing::domain::ports::UserStore::user_by_email(&s, &u.email)
        .await
        .unwrap();
    assert_eq!(found.unwrap().value, u);
}
