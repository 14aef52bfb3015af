//! The Cosmos DB (NoSQL API) store, used in Azure.

pub mod layout;
