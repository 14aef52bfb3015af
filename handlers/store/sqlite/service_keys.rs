//! Service keys in a small SQLite file of their own beside the database
//! (`<database>.service-keys`), in ordinary locking mode: the database file
//! is held exclusively by the running service, and `handler service-keys`
//! must work whether or not it runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{from_json, ms, to_json, unavailable};
use crate::domain::ports::{ServiceKeyStore, StoreError};
use crate::domain::service::ServiceKey;

pub struct ServiceKeyFile {
    conn: Mutex<Connection>,
}

impl ServiceKeyFile {
    /// Where the keys of the database at `database` live.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push(".service-keys");
        PathBuf::from(name)
    }

    pub fn open(database: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(Self::path_for(database)).map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        Self::init(conn)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS service_keys (
                id         TEXT PRIMARY KEY,
                created_at INTEGER NOT NULL,
                doc        TEXT NOT NULL
            );",
        )
        .map_err(unavailable)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::unavailable("service key store lock poisoned"))?;
        f(&conn)
    }

    fn read(c: &Connection, id: uuid::Uuid) -> Result<Option<ServiceKey>, StoreError> {
        let doc: Option<String> = c
            .query_row(
                "SELECT doc FROM service_keys WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        doc.as_deref().map(from_json).transpose()
    }
}

#[async_trait]
impl ServiceKeyStore for ServiceKeyFile {
    async fn add_service_key(&self, key: &ServiceKey) -> Result<(), StoreError> {
        let doc = to_json(key)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO service_keys (id, created_at, doc) VALUES (?1, ?2, ?3)",
                params![key.id.to_string(), ms(key.created_at), doc],
            )
            .map(drop)
            .map_err(unavailable)
        })
    }

    async fn service_key(&self, id: uuid::Uuid) -> Result<Option<ServiceKey>, StoreError> {
        self.with(|c| Self::read(c, id))
    }

    async fn service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT doc FROM service_keys ORDER BY created_at, id")
                .map_err(unavailable)?;
            let docs = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            docs.iter().map(|d| from_json(d)).collect()
        })
    }

    async fn revoke_service_key(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let Some(mut key) = Self::read(c, id)? else {
                return Ok(false);
            };
            if key.revoked_at.is_none() {
                key.revoked_at = Some(at);
                c.execute(
                    "UPDATE service_keys SET doc = ?2 WHERE id = ?1",
                    params![id.to_string(), to_json(&key)?],
                )
                .map_err(unavailable)?;
            }
            Ok(true)
        })
    }
}
