//! Each client's configuration listing, kept in memory and dropped the
//! moment it changes, as an API server serves lists from its watch cache.
//! Services and dashboards list configurations all day, and those change a
//! few times a month: answering from memory saves the database a round trip
//! per call.
//!
//! Freshness rests on the [`hub`](super::hub)'s LISTEN connection: a trigger
//! on `job_schedule_configs` notifies [`CHANNEL`] with the client id at the
//! commit of every change, from any replica or any SQL session, and the hub
//! drops that client's listing. The cache serves nothing while the hub is not
//! listening (a change committed then would go unseen), and empties whenever
//! it starts or stops listening. The process that makes a change also drops
//! the listing itself right after its commit, so a caller reads its own
//! writes on the replica it wrote through; another replica sees the change
//! once the notification arrives (milliseconds). A listing is also reloaded
//! after a maximum age (`--config-cache-secs`, 10 s by default; 0 turns the
//! cache off), which bounds the staleness if the LISTEN connection dies
//! without the hub noticing.
//!
//! A listing read from the database is stored only if nothing was dropped
//! since the read began (a generation count), so a read that raced a change
//! never stores what the change replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::scheduling::domain::config::JobScheduleConfig;

/// The channel the `job_schedule_configs` trigger notifies; the payload is
/// the client id.
pub const CHANNEL: &str = "allegro_configs";

/// A client with more configurations than this is listed from the database
/// page by page, not kept whole in memory.
pub const MAX_LISTED: usize = 256;

/// Clients whose listings are kept at once; past it the oldest goes.
const MAX_CLIENTS: usize = 4096;

/// What the cache knows of a client's configurations.
#[derive(Debug, Clone)]
pub enum Listing {
    /// All of them, in the database's name order.
    Whole(Arc<[JobScheduleConfig]>),
    /// More than [`MAX_LISTED`]: list from the database.
    TooMany,
}

struct Entry {
    listing: Listing,
    loaded: Instant,
}

#[derive(Default)]
struct State {
    /// Whether the hub is listening, so that changes reach the cache.
    listening: bool,
    /// Counts every drop; a read stores its listing only if unchanged.
    generation: u64,
    clients: HashMap<String, Entry>,
}

/// The moment a database read began, as the cache counts changes.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
}

/// The process's cache of configuration listings. Cheap to clone.
#[derive(Clone)]
pub struct ConfigCache {
    state: Arc<Mutex<State>>,
    /// A listing older than this is read again; zero keeps nothing.
    max_age: Duration,
}

impl ConfigCache {
    /// A cache whose listings are read again after `max_age` (zero: a cache
    /// that keeps nothing).
    pub fn new(max_age: Duration) -> Self {
        Self {
            state: Arc::default(),
            max_age,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `client`'s listing, if held and fresh.
    pub fn get(&self, client: &str) -> Option<Listing> {
        let state = self.state();
        if !state.listening {
            return None;
        }
        state
            .clients
            .get(client)
            .filter(|e| e.loaded.elapsed() < self.max_age)
            .map(|e| e.listing.clone())
    }

    /// Taken before reading a listing from the database; `None` while
    /// changes cannot be seen (nothing read then may be stored).
    pub fn ticket(&self) -> Option<Ticket> {
        let state = self.state();
        (state.listening && !self.max_age.is_zero()).then_some(Ticket {
            generation: state.generation,
        })
    }

    /// Stores `client`'s listing read since `ticket`, unless something was
    /// dropped meanwhile (the read may predate that change).
    pub fn fill(&self, client: &str, ticket: Ticket, listing: Listing) {
        let mut state = self.state();
        if !state.listening || state.generation != ticket.generation {
            return;
        }
        if state.clients.len() >= MAX_CLIENTS && !state.clients.contains_key(client) {
            let oldest = state
                .clients
                .iter()
                .min_by_key(|(_, e)| e.loaded)
                .map(|(c, _)| c.clone());
            if let Some(oldest) = oldest {
                state.clients.remove(&oldest);
            }
        }
        state.clients.insert(
            client.to_string(),
            Entry {
                listing,
                loaded: Instant::now(),
            },
        );
    }

    /// Drops `client`'s listing: one of its configurations changed.
    pub fn invalidate(&self, client: &str) {
        let mut state = self.state();
        state.generation += 1;
        state.clients.remove(client);
    }

    /// The hub started (`true`) or stopped listening: drops everything, as
    /// changes may have gone unseen.
    pub fn set_listening(&self, listening: bool) {
        let mut state = self.state();
        state.generation += 1;
        state.clients.clear();
        state.listening = listening;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ConfigCache {
        ConfigCache::new(Duration::from_secs(3600))
    }

    fn listing(n: usize) -> Listing {
        Listing::Whole(Vec::with_capacity(n).into())
    }

    fn whole(l: Option<Listing>) -> bool {
        matches!(l, Some(Listing::Whole(_)))
    }

    #[test]
    fn serves_nothing_until_the_hub_listens() {
        let cache = cache();
        assert!(cache.ticket().is_none());
        cache.set_listening(true);
        let ticket = cache.ticket().unwrap();
        cache.fill("acme", ticket, listing(0));
        assert!(whole(cache.get("acme")));
        cache.set_listening(false);
        assert!(cache.get("acme").is_none());
        assert!(cache.ticket().is_none());
        cache.set_listening(true);
        assert!(cache.get("acme").is_none(), "a new LISTEN starts empty");
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = cache();
        cache.set_listening(true);
        let ticket = cache.ticket().unwrap();
        cache.invalidate("acme");
        cache.fill("acme", ticket, listing(0));
        assert!(cache.get("acme").is_none());
        let ticket = cache.ticket().unwrap();
        cache.fill("acme", ticket, listing(0));
        assert!(whole(cache.get("acme")));
    }

    #[test]
    fn a_change_drops_only_its_client() {
        let cache = cache();
        cache.set_listening(true);
        let ticket = cache.ticket().unwrap();
        cache.fill("acme", ticket, listing(0));
        cache.fill("globex", ticket, Listing::TooMany);
        cache.invalidate("acme");
        assert!(cache.get("acme").is_none());
        assert!(matches!(cache.get("globex"), Some(Listing::TooMany)));
    }

    #[test]
    fn keeps_nothing_when_off_and_nothing_past_its_age() {
        let off = ConfigCache::new(Duration::ZERO);
        off.set_listening(true);
        assert!(off.ticket().is_none());
        let brief = ConfigCache::new(Duration::from_millis(1));
        brief.set_listening(true);
        let ticket = brief.ticket().unwrap();
        brief.fill("acme", ticket, listing(0));
        std::thread::sleep(Duration::from_millis(5));
        assert!(brief.get("acme").is_none());
    }

    #[test]
    fn holds_a_bounded_number_of_clients() {
        let cache = cache();
        cache.set_listening(true);
        let ticket = cache.ticket().unwrap();
        for i in 0..MAX_CLIENTS + 10 {
            cache.fill(&format!("c{i}"), ticket, listing(0));
        }
        assert_eq!(cache.state().clients.len(), MAX_CLIENTS);
        assert!(whole(cache.get(&format!("c{}", MAX_CLIENTS + 9))));
    }
}
