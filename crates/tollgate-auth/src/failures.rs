//! [`FailedAuthLimit`]: failed authentications counted per client address,
//! so a flood of bad keys from one place is refused before it costs a hash
//! or a store lookup.
//!
//! **The rule (a fixed window per address group).** An address group is an
//! IPv4 address or an IPv6 /64 (one subscriber usually holds a whole /64).
//! A group's first 401 opens a window of [`window`](FailedAuthLimit::new)
//! length; every 401 inside it counts. Once `limit` failures are counted,
//! every request from the group (good keys included) is refused with 429
//! `RATE_LIMITED` until the window ends; then the group starts afresh.
//!
//! **Bounded state.** At most [`capacity`](FailedAuthLimit::capacity)
//! groups are tracked (default 100,000). When the map is full, windows that
//! have ended are swept out (at most once a second); if none has ended, a
//! new address is not tracked rather than evicting a live window. That is
//! fail-safe for legitimate clients — an untracked address is simply not
//! limited — at the price that an attacker holding more than `capacity`
//! live windows is not limited from its further addresses until windows end.
//! Such a flood still costs one hash and one lookup per request, as it would
//! with no limit.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::header::{HeaderValue, RETRY_AFTER};
use tollgate_core::{ClientIp, Code, Rejection};

/// Failures allowed per window by default.
pub const DEFAULT_FAILED_AUTH_LIMIT: u32 = 20;
/// The window's length by default.
pub const DEFAULT_FAILED_AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Address groups tracked at most, by default.
pub const DEFAULT_FAILED_AUTH_CAPACITY: usize = 100_000;

const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Counts failed authentications per client address group and refuses an
/// address past its limit. See the [module docs](self) for the rule.
///
/// Clones share their counts. Turn it on with
/// [`BearerAuthLayer::limit_failures`](crate::BearerAuthLayer::limit_failures).
#[derive(Clone)]
pub struct FailedAuthLimit {
    inner: Arc<Inner>,
}

struct Inner {
    limit: u32,
    window: Duration,
    capacity: usize,
    // Groups in the map, readable without the lock: while it is zero a
    // request needs no lock at all.
    tracked: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    windows: HashMap<Group, Window>,
    // A full map is not swept again before this.
    next_sweep: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    V4(u32),
    V6(u64),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    ends: SystemTime,
    failures: u32,
}

impl Group {
    fn of(ip: ClientIp) -> Group {
        match ip.ip().to_canonical() {
            IpAddr::V4(v4) => Group::V4(u32::from(v4)),
            IpAddr::V6(v6) => Group::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl Default for FailedAuthLimit {
    /// 20 failures a minute, 100,000 groups.
    fn default() -> FailedAuthLimit {
        FailedAuthLimit::new(DEFAULT_FAILED_AUTH_LIMIT, DEFAULT_FAILED_AUTH_WINDOW)
    }
}

impl FailedAuthLimit {
    /// `limit` failures per `window` per address group (at least one each).
    pub fn new(limit: u32, window: Duration) -> FailedAuthLimit {
        FailedAuthLimit {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                window: window.max(Duration::from_secs(1)),
                capacity: DEFAULT_FAILED_AUTH_CAPACITY,
                tracked: AtomicUsize::new(0),
                state: Mutex::default(),
            }),
        }
    }

    /// `limit` failures a minute per address group.
    pub fn per_minute(limit: u32) -> FailedAuthLimit {
        FailedAuthLimit::new(limit, Duration::from_secs(60))
    }

    /// The most address groups tracked at once (default 100,000).
    pub fn capacity(self, capacity: usize) -> FailedAuthLimit {
        let inner = &self.inner;
        FailedAuthLimit {
            inner: Arc::new(Inner {
                limit: inner.limit,
                window: inner.window,
                capacity: capacity.max(1),
                tracked: AtomicUsize::new(0),
                state: Mutex::default(),
            }),
        }
    }

    /// How many address groups are tracked now (ended windows not yet swept
    /// included); never more than the capacity.
    pub fn tracked(&self) -> usize {
        self.inner.tracked.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is counts only; one left by a panic is still usable.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long `ip` must wait, if it is past its limit at `now`. No lock
    /// is taken while no address is tracked.
    pub(crate) fn retry_after(&self, ip: ClientIp, now: impl FnOnce() -> SystemTime) -> Option<Duration> {
        if self.tracked() == 0 {
            return None;
        }
        let now = now();
        let state = self.lock();
        let window = state.windows.get(&Group::of(ip))?;
        if window.failures < self.inner.limit {
            return None;
        }
        window.ends.duration_since(now).ok().filter(|left| !left.is_zero())
    }

    /// Counts one failed authentication from `ip` at `now`.
    pub(crate) fn record_failure(&self, ip: ClientIp, now: SystemTime) {
        let inner = &self.inner;
        let group = Group::of(ip);
        let mut state = self.lock();
        let fresh = Window {
            ends: now + inner.window,
            failures: 1,
        };
        if let Some(window) = state.windows.get_mut(&group) {
            if window.ends <= now {
                *window = fresh;
            } else {
                window.failures = window.failures.saturating_add(1);
            }
            return;
        }
        if state.windows.len() >= inner.capacity && !state.sweep(now) {
            return; // full of live windows: this address goes untracked
        }
        state.windows.insert(group, fresh);
        inner.tracked.store(state.windows.len(), Ordering::Relaxed);
    }

    /// The 429 for a wait of `retry_after` (whole seconds, rounded up).
    pub(crate) fn rejection(retry_after: Duration) -> Rejection {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Rejection::new(
            Code::RateLimited,
            format!("Too many failed authentications from this address. Retry after {secs} seconds."),
        )
        .with_field("retry_after", secs)
        .with_header(RETRY_AFTER, HeaderValue::from(secs))
    }
}

impl State {
    // Removes the windows that have ended, at most once per
    // `SWEEP_INTERVAL`; whether any room was made.
    fn sweep(&mut self, now: SystemTime) -> bool {
        if self.next_sweep.is_some_and(|next| now < next) {
            return false;
        }
        let before = self.windows.len();
        self.windows.retain(|_, window| window.ends > now);
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        self.windows.len() < before
    }
}

impl fmt::Debug for FailedAuthLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailedAuthLimit")
            .field("limit", &self.inner.limit)
            .field("window", &self.inner.window)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> ClientIp {
        ClientIp::new(text.parse().unwrap())
    }

    #[test]
    fn groups_are_ipv4_addresses_and_ipv6_64s() {
        assert_eq!(Group::of(ip("2001:db8:1:2::1")), Group::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(Group::of(ip("2001:db8:1:2::1")), Group::of(ip("2001:db8:1:3::1")));
        assert_ne!(Group::of(ip("192.0.2.1")), Group::of(ip("192.0.2.2")));
        assert_eq!(Group::of(ip("::ffff:192.0.2.1")), Group::of(ip("192.0.2.1")));
    }

    #[test]
    fn the_limit_holds_until_the_window_ends() {
        let limit = FailedAuthLimit::new(2, Duration::from_secs(60));
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let client = ip("192.0.2.1");
        assert_eq!(limit.retry_after(client, || start), None);
        limit.record_failure(client, start);
        assert_eq!(limit.retry_after(client, || start), None);
        limit.record_failure(client, start + Duration::from_secs(10));
        assert_eq!(
            limit.retry_after(client, || start + Duration::from_millis(10_500)),
            Some(Duration::from_millis(49_500))
        );
        assert_eq!(limit.retry_after(client, || start + Duration::from_secs(60)), None);
        // A failure after the window opens a fresh one.
        limit.record_failure(client, start + Duration::from_secs(61));
        assert_eq!(limit.retry_after(client, || start + Duration::from_secs(61)), None);
    }

    #[test]
    fn a_full_map_sweeps_ended_windows_and_never_evicts_live_ones() {
        let limit = FailedAuthLimit::new(1, Duration::from_secs(60)).capacity(2);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        limit.record_failure(ip("192.0.2.1"), start);
        limit.record_failure(ip("192.0.2.2"), start);
        limit.record_failure(ip("192.0.2.3"), start);
        assert_eq!(limit.tracked(), 2);
        assert!(limit.retry_after(ip("192.0.2.1"), || start).is_some());
        assert!(
            limit.retry_after(ip("192.0.2.3"), || start).is_none(),
            "untracked: not limited"
        );
        let later = start + Duration::from_secs(60);
        limit.record_failure(ip("192.0.2.3"), later);
        assert_eq!(limit.tracked(), 1);
        assert!(limit.retry_after(ip("192.0.2.3"), || later).is_some());
    }

    #[test]
    fn the_rejection_has_the_seeds_shape() {
        let rejection = FailedAuthLimit::rejection(Duration::from_millis(41_200));
        assert_eq!(rejection.status(), 429);
        assert_eq!(rejection.headers()[RETRY_AFTER], "42");
        assert_eq!(
            rejection.to_json(),
            r#"{"error":{"code":"RATE_LIMITED","message":"Too many failed authentications from this address. Retry after 42 seconds.","retry_after":42}}"#
        );
    }
}
