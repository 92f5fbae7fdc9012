//! Time as a dependency, so quotas, expiries and grace periods are tested
//! with a [`ManualClock`] instead of sleeps.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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
pub struct SharedClock {
    clock: Arc<dyn Clock>,
    // Whether `clock` is the `SystemClock`, which `approximate_now` may read
    // from the CPU's time-stamp counter instead.
    system: bool,
}

impl SharedClock {
    /// Wraps a clock.
    pub fn new(clock: impl Clock) -> SharedClock {
        let system = (&clock as &dyn Any).is::<SystemClock>();
        SharedClock {
            clock: Arc::new(clock),
            system,
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The current time to within about a millisecond, cheaper to read than
    /// [`now`](Self::now): for what is read on every request and measured
    /// in milliseconds or more, such as rate limits and a key's last use.
    ///
    /// The [`SystemClock`] is then read from the CPU's time-stamp counter
    /// (about 10 ns instead of 25–35 ns), re-anchored to the system clock
    /// every second, where the operating system itself keeps time with that
    /// counter (Linux's `tsc` clock source, which the kernel only uses once
    /// it has found the counter steady and in step across CPUs); elsewhere,
    /// and for any other clock, this is [`now`](Self::now). What must be
    /// ordered exactly against another reading of the system clock, such as
    /// whether a key was revoked before a request, uses `now`.
    pub fn approximate_now(&self) -> SystemTime {
        if self.system {
            counter_clock_now()
        } else {
            self.clock.now()
        }
    }
}

// The system clock extrapolated from the time-stamp counter: `quanta`
// calibrates the counter against the monotonic clock once per process, and
// the offset to wall time is re-read from the system clock once a second,
// so neither calibration error nor NTP adjustments (parts per million) add
// up to more than a few microseconds.
struct CounterClock {
    counter: quanta::Clock,
    start: u64,
    // Wall-clock nanoseconds minus counter nanoseconds since `start`.
    offset: AtomicU64,
    // Counter nanoseconds since `start` after which the offset is re-read.
    resync_after: AtomicU64,
}

const RESYNC_NANOS: u64 = 1_000_000_000;

fn counter_clock_now() -> SystemTime {
    static COUNTER: OnceLock<Option<CounterClock>> = OnceLock::new();
    match COUNTER.get_or_init(CounterClock::if_supported) {
        Some(counter) => counter.now(),
        None => SystemTime::now(),
    }
}

impl CounterClock {
    // Only where the kernel keeps time with the counter itself.
    fn if_supported() -> Option<CounterClock> {
        let source =
            std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource").ok()?;
        if source.trim() != "tsc" {
            return None;
        }
        let counter = quanta::Clock::new();
        let clock = CounterClock {
            start: counter.raw(),
            counter,
            offset: AtomicU64::new(0),
            resync_after: AtomicU64::new(0),
        };
        // The first reading anchors the offset; a second one, a moment
        // later, must agree with the system clock, or calibration failed.
        clock.now();
        let extrapolated = clock.now();
        let skew = match SystemTime::now().duration_since(extrapolated) {
            Ok(behind) => behind,
            Err(ahead) => ahead.duration(),
        };
        (skew < Duration::from_millis(1)).then_some(clock)
    }

    fn now(&self) -> SystemTime {
        let elapsed = self.counter.delta_as_nanos(self.start, self.counter.raw());
        if elapsed >= self.resync_after.load(Ordering::Relaxed) {
            return self.resync(elapsed);
        }
        UNIX_EPOCH + Duration::from_nanos(elapsed.wrapping_add(self.offset.load(Ordering::Relaxed)))
    }

    #[cold]
    fn resync(&self, elapsed: u64) -> SystemTime {
        let system = SystemTime::now();
        // Racing threads store nearly equal values; a reader that pairs an
        // old offset with a new deadline is off by one second's drift.
        self.offset
            .store(unix_nanos(system).wrapping_sub(elapsed), Ordering::Relaxed);
        self.resync_after
            .store(elapsed.saturating_add(RESYNC_NANOS), Ordering::Relaxed);
        system
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
        assert_eq!(shared.approximate_now(), shared.now(), "other clocks are read exactly");
    }

    #[test]
    fn the_approximate_system_time_is_within_a_millisecond_on_every_thread() {
        let shared = SharedClock::default();
        let slack = Duration::from_millis(1);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20_000 {
                        let before = SystemTime::now();
                        let approximate = shared.approximate_now();
                        let after = SystemTime::now();
                        assert!(
                            approximate + slack >= before && approximate <= after + slack,
                            "{approximate:?} is not within {before:?}..{after:?}"
                        );
                    }
                });
            }
        });
    }
}
