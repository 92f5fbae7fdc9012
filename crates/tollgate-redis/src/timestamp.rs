//! Times as Redis stores them: nanoseconds since the Unix epoch as a
//! 20-digit zero-padded decimal string.
//!
//! Fixed width makes string order equal time order, so Lua scripts compare
//! times with `<` without converting them to Lua numbers (doubles, which
//! would lose the nanoseconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate_core::unix_nanos;

/// `time` as a 20-digit decimal of nanoseconds (times before 1970 count as 0).
pub(crate) fn encode(time: SystemTime) -> String {
    format!("{:020}", unix_nanos(time))
}

/// Parses [`encode`]'s output (or any decimal of nanoseconds).
pub(crate) fn decode(text: &str) -> Option<SystemTime> {
    let nanos: u64 = text.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_nanosecond_and_sorts_as_text() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(encode(time), "01700000000123456789");
        assert_eq!(decode(&encode(time)), Some(time));
        let later = time + Duration::from_nanos(1);
        assert!(encode(later) > encode(time));
        assert!(encode(UNIX_EPOCH + Duration::from_secs(9)) < encode(UNIX_EPOCH + Duration::from_secs(10)));
        assert_eq!(decode("x"), None);
    }
}
