//! The reference billing ledger: accounts, subscriptions, bill units, usage,
//! balances and transactions. [`rules`] holds the pure billing arithmetic,
//! [`store`] every SQL statement on the ledger's tables.

pub mod rules;
pub mod store;
