//! Storage adapters implementing the domain's store traits.

pub mod cosmos;
pub mod sqlite;

pub use sqlite::SqliteStore;
