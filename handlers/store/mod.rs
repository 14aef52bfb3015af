//! Storage adapters implementing the domain's store traits.

pub mod sqlite;

pub use sqlite::SqliteStore;
