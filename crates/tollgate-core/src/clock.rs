//! Time as a dependency, so quotas, expiries and grace periods are tested
//! with a [`ManualClock`] instead of sleeps.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tollgate_core::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix_secs(1_700_000_000);
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(1_700_000_001_500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `time`.
    pub fn new(time: SystemTime) -> ManualClock {
        ManualClock {
            nanos_since_epoch: Arc::new(AtomicU64::new(unix_nanos(time))),
        }
    }

    /// A clock showing `secs` seconds after the Unix epoch.
    pub fn at_unix_secs(secs: u64) -> ManualClock {
        ManualClock::new(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos_since_epoch.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `time` (which may be earlier: clocks do step back).
    pub fn set(&self, time: SystemTime) {
        self.nanos_since_epoch.store(unix_nanos(time), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }
}

/// A shared, cloneable clock; the default is the [`SystemClock`].
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    /// Wraps a clock.
    pub fn new(clock: impl Clock) -> SharedClock {
        SharedClock(Arc::new(clock))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        self.0.now()
    }
}

impl Default for SharedClock {
    fn default() -> SharedClock {
        SharedClock::new(SystemClock)
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedClock").field(&self.now()).finish()
    }
}

impl<C: Clock> From<C> for SharedClock {
    fn from(clock: C) -> SharedClock {
        SharedClock::new(clock)
    }
}

/// Nanoseconds since the Unix epoch; times before it count as 0.
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whole seconds since the Unix epoch; times before it count as 0.
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::at_unix_secs(10);
        let other = clock.clone();
        clock.advance(Duration::from_secs(5));
        assert_eq!(unix_secs(other.now()), 15);
        other.set(UNIX_EPOCH + Duration::from_secs(3));
        assert_eq!(unix_secs(clock.now()), 3);
    }

    #[test]
    fn shared_clock_wraps_any_clock() {
        let manual = ManualClock::at_unix_secs(42);
        let shared = SharedClock::from(manual.clone());
        assert_eq!(unix_secs(shared.now()), 42);
        manual.advance(Duration::from_secs(1));
        assert_eq!(unix_secs(shared.now()), 43);
    }
}
