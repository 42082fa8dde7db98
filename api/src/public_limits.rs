//! Bounds on what anonymous clients can make the server do: a token bucket
//! per client address on the unauthenticated routes (OCSP, CRL, export
//! links, EST), a budget of failed authentications per client, and the
//! aggregation of their refusals into one audit event per client and
//! window.
//!
//! Clients are keyed by address: an IPv4 address (an IPv4-mapped IPv6 peer
//! counts as its IPv4 address) or an IPv6 /64, since one host usually owns
//! a whole /64. Every map is bounded: idle entries are dropped when a map
//! fills up, and when it is full of active clients the newcomers share one
//! bucket, so memory stays bounded under a flood from many addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// Most clients each map tracks.
const MAX_CLIENTS: usize = 50_000;
/// The key newcomers share once a map is full of active clients.
const OVERFLOW: &str = "overflow";

/// The key a client is counted under.
pub fn client_key(addr: SocketAddr) -> String {
    match certctl_engine::net_guard::canonical(addr.ip()) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Public,
    FailedAuth,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::FailedAuth => "failed_auth",
        }
    }
}

/// Marks a response refused by a client limit: the outer layer writes no
/// `api_request` event for it, only the aggregated one.
#[derive(Debug, Clone)]
pub struct Throttled {
    pub limit: Limit,
    pub client: String,
}

/// A 429 with Retry-After, marked [`Throttled`].
pub fn too_many(limit: Limit, client: &str, retry_after: Duration, detail: &str) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut res = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!("{detail}; retry in {secs} s"),
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res.extensions_mut().insert(Throttled {
        limit,
        client: client.to_owned(),
    });
    res
}

/// Drops entries `idle` says are stale when the map is full; answers the
/// key to use (the overflow key when it is still full).
fn room<'a, V>(map: &mut HashMap<String, V>, key: &'a str, idle: impl Fn(&V) -> bool) -> &'a str {
    if map.len() >= MAX_CLIENTS && !map.contains_key(key) {
        map.retain(|_, v| !idle(v));
        if map.len() >= MAX_CLIENTS {
            return OVERFLOW;
        }
    }
    key
}

/// A token bucket per client.
#[derive(Debug)]
pub struct ClientLimiter {
    rps: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl ClientLimiter {
    /// `rps` 0 turns the limit off.
    pub fn new(rps: u32, burst: u32) -> Self {
        Self {
            rps: f64::from(rps),
            burst: f64::from(burst.max(rps).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when the client may go on; how long to wait otherwise.
    pub fn check(&self, client: &str) -> Option<Duration> {
        if self.rps <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let full_after = Duration::from_secs_f64(self.burst / self.rps);
        let key = room(&mut *buckets, client, |(_, t)| {
            now.duration_since(*t) > full_after
        });
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rps).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - *tokens) / self.rps))
    }

    pub fn rps(&self) -> f64 {
        self.rps
    }
}

/// Failed authentications per client in a fixed window; over the budget,
/// the client is refused without trying its credentials until the window
/// ends.
#[derive(Debug)]
pub struct FailedAuthLimiter {
    max: u32,
    window: Duration,
    clients: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailedAuthLimiter {
    /// `max` 0 turns the limit off.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window: window.max(Duration::from_secs(1)),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long the client must wait, when it used up its failures.
    pub fn blocked(&self, client: &str) -> Option<Duration> {
        if self.max == 0 {
            return None;
        }
        let now = Instant::now();
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        // A client the full map had no room for was counted under the
        // overflow key.
        let (n, start) = match clients.get(client) {
            Some(v) => v,
            None if clients.len() >= MAX_CLIENTS => clients.get(OVERFLOW)?,
            None => return None,
        };
        let end = *start + self.window;
        (*n >= self.max && now < end).then(|| end - now)
    }

    /// Counts one failed authentication.
    pub fn failed(&self, client: &str) {
        if self.max == 0 {
            return;
        }
        let now = Instant::now();
        let window = self.window;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let key = room(&mut *clients, client, |(_, t)| {
            now.duration_since(*t) >= window
        });
        let (n, start) = clients.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(*start) >= window {
            *n = 0;
            *start = now;
        }
        *n = n.saturating_add(1);
    }

    pub fn max(&self) -> u32 {
        self.max
    }
}

/// What the aggregator keeps per (limit, client).
#[derive(Debug)]
struct Tally {
    window_start: Instant,
    /// Refusals not yet in an event.
    pending: u64,
    /// Whether this window already has its event.
    reported: bool,
}

/// At most one audit event per client, limit and window: the first refusal
/// of a window writes one, carrying the refusals since the previous event.
#[derive(Debug)]
pub struct ThrottleLog {
    window: Duration,
    tallies: Mutex<HashMap<String, Tally>>,
}

impl ThrottleLog {
    pub fn new(window: Duration) -> Self {
        Self {
            window: window.max(Duration::from_secs(1)),
            tallies: Mutex::new(HashMap::new()),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Counts one refusal; answers the number of refusals the event to
    /// write now stands for, or `None` when this window has its event.
    pub fn refused(&self, limit: Limit, client: &str) -> Option<u64> {
        let now = Instant::now();
        let window = self.window;
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("{}|{client}", limit.as_str());
        let key = room(&mut *tallies, &id, |t| {
            now.duration_since(t.window_start) >= window && t.pending == 0
        });
        let t = tallies.entry(key.to_owned()).or_insert(Tally {
            window_start: now,
            pending: 0,
            reported: false,
        });
        if now.duration_since(t.window_start) >= window {
            t.window_start = now;
            t.reported = false;
        }
        t.pending += 1;
        if t.reported {
            return None;
        }
        t.reported = true;
        Some(std::mem::take(&mut t.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_keyed_by_address_and_ipv6_slash_64() {
        let k = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(k("192.0.2.1:5"), "192.0.2.1");
        assert_eq!(k("[::ffff:192.0.2.1]:5"), "192.0.2.1");
        assert_eq!(k("[2001:db8:1:2:3::4]:5"), "2001:db8:1:2::/64");
        assert_eq!(k("[2001:db8:1:2:ffff::9]:5"), "2001:db8:1:2::/64");
    }

    #[test]
    fn failures_over_budget_block_until_the_window_ends() {
        let l = FailedAuthLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.blocked("a").is_none());
            l.failed("a");
        }
        assert!(l.blocked("a").is_some());
        assert!(l.blocked("b").is_none());
    }

    #[test]
    fn one_event_per_window() {
        let log = ThrottleLog::new(Duration::from_secs(60));
        assert_eq!(log.refused(Limit::Public, "a"), Some(1));
        for _ in 0..100 {
            assert_eq!(log.refused(Limit::Public, "a"), None);
        }
        assert_eq!(log.refused(Limit::FailedAuth, "a"), Some(1));
        assert_eq!(log.refused(Limit::Public, "b"), Some(1));
    }

    #[test]
    fn buckets_refill() {
        let l = ClientLimiter::new(1, 2);
        assert!(l.check("a").is_none());
        assert!(l.check("a").is_none());
        assert!(l.check("a").is_some());
        assert!(ClientLimiter::new(0, 0).check("a").is_none());
    }
}
