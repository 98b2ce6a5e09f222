//! Live status for watchers. The [`hub`] wakes every watcher of this
//! process when a client's events change; each watcher's [`session`] then
//! reads the event table from its own position, at its own pace: a slow
//! watcher delays nobody, and a watcher resuming with the last sequence it
//! saw misses nothing and gets nothing twice. The hub's connection also
//! keeps the [`config_cache`] of configuration listings fresh.

pub mod config_cache;
pub mod hub;
pub mod session;

pub use hub::EventHub;
pub use session::{run, WatchMessage, WatchScope};

/// Events read from the table per query.
const PAGE: i64 = 500;
