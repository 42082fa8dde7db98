//! A small read cache whose entries live for the current second: what was
//! read at second `t` of the engine's clock serves while the clock still
//! reads `t` and, whatever the clock says (tests freeze it), for at most one
//! second of real time. Writers clear it when they commit; a read that
//! started before a clear does not store what it read. Readers that miss
//! the same key at once can take its fill lock, so one of them reads the
//! store and the others find the entry it stored.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::clock::UnixTime;

/// The longest an entry serves in real time.
const REAL_BOUND: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry<V> {
    at: UnixTime,
    read: Instant,
    value: V,
}

#[derive(Debug)]
pub(crate) struct SecondCache<V> {
    entries: RwLock<HashMap<String, Entry<V>>>,
    /// Bumped by every clear.
    generation: AtomicU64,
    /// Most entries at once; past it the cache starts over.
    capacity: usize,
    /// Fill locks, by key hash.
    fills: [tokio::sync::Mutex<()>; FILL_LOCKS],
}

/// Fill locks per cache: keys that share one only wait for each other's
/// first read of a second.
const FILL_LOCKS: usize = 16;

impl<V: Clone> SecondCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            capacity,
            fills: Default::default(),
        }
    }

    /// The lock to hold from a miss of `key` until its value is stored:
    /// when a new second starts, every caller of a hot key misses at once,
    /// and without it each of them would run the same query.
    pub(crate) fn fill_lock(&self, key: &str) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.fills[(h.finish() as usize) % FILL_LOCKS]
    }

    pub(crate) fn invalidate(&self) {
        if let Ok(mut e) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            e.clear();
        }
    }

    /// Take this before reading the store; pass it to [`Self::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, key: &str, now: UnixTime) -> Option<V> {
        let e = self.entries.read().ok()?;
        let entry = e.get(key)?;
        (entry.at == now && entry.read.elapsed() < REAL_BOUND).then(|| entry.value.clone())
    }

    /// Stores `value` unless the cache was cleared since `generation`.
    pub(crate) fn put(&self, key: &str, now: UnixTime, value: V, generation: u64) {
        if let Ok(mut e) = self.entries.write() {
            if self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            if e.len() >= self.capacity {
                e.clear();
            }
            let entry = Entry {
                at: now,
                read: Instant::now(),
                value,
            };
            e.insert(key.to_owned(), entry);
        }
    }
}
