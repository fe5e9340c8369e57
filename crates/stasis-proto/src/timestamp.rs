//! `google.protobuf.Timestamp` with the canonical proto3 JSON form the SDKs parse:
//! `2024-01-02T03:04:05.500Z` (UTC, `Z`, 0/3/6/9 fraction digits), and the one RFC 3339
//! formatter of Stasis: the control API's times ([`rfc3339_millis`]) are written here too.
//!
//! pbjson-types' Timestamp writes `+00:00` instead of `Z`, and protobuf-es (the JS SDK)
//! rejects a fraction followed by an offset, so the wire types use this one instead.
//! It also keeps chrono out of the agent.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Seconds and nanoseconds since the Unix epoch, wire-compatible with
/// `google.protobuf.Timestamp` in both binary and JSON form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Always in `0..1_000_000_000`, also for times before the epoch.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range proto3 JSON allows.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    pub fn new(seconds: i64, nanos: i32) -> Self {
        Timestamp { seconds, nanos }
    }

    /// The time `ms` milliseconds after the Unix epoch (before it when negative).
    pub fn from_unix_millis(ms: i64) -> Self {
        Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
    }

    fn check(&self) -> Result<(), String> {
        if !(0..1_000_000_000).contains(&self.nanos) {
            return Err(format!("timestamp nanos {} out of range", self.nanos));
        }
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) {
            return Err(format!("timestamp seconds {} outside years 1..=9999", self.seconds));
        }
        Ok(())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let (seconds, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i32),
            Err(e) => {
                // Before the epoch: floor the seconds so nanos stay non-negative.
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos() as i32);
                if n == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - n)
                }
            }
        };
        Timestamp { seconds, nanos }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let nanos = Duration::from_nanos(t.nanos.clamp(0, 999_999_999) as u64);
        if t.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.seconds as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of seconds since the Unix epoch.
struct DateTime(i64);

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        write!(f, "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// RFC 3339 in UTC with exactly three fraction digits, `2024-01-02T03:04:05.000Z`: how
/// the control API (E2B's REST schema) writes its times (`startedAt`, `endAt`, ...).
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let t = Timestamp::from_unix_millis(unix_ms);
    format!("{}.{:03}Z", DateTime(t.seconds), t.nanos / 1_000_000)
}

impl fmt::Display for Timestamp {
    /// Canonical proto3 JSON text; for out-of-range values, a best effort.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", DateTime(self.seconds))?;
        let n = self.nanos;
        if n == 0 {
        } else if n % 1_000_000 == 0 {
            write!(f, ".{:03}", n / 1_000_000)?;
        } else if n % 1_000 == 0 {
            write!(f, ".{:06}", n / 1_000)?;
        } else {
            write!(f, ".{n:09}")?;
        }
        f.write_str("Z")
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;

    /// RFC 3339 as proto3 JSON allows: `Z` or a `±HH:MM` offset, 0 to 9 fraction digits.
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("invalid RFC 3339 timestamp {:?}", s.chars().take(64).collect::<String>());
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
            let part = b.get(r).ok_or_else(err)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err());
            }
            Ok(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
            return Err(err());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 {
            return Err(err());
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            if end == start || end - start > 9 {
                return Err(err());
            }
            nanos = num(start..end)? * 10i64.pow(9 - (end - start) as u32);
            i = end;
        }
        let offset = match b.get(i) {
            Some(b'Z' | b'z') if b.len() == i + 1 => 0,
            Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return Err(err()),
        };
        let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
        let t = Timestamp { seconds, nanos: nanos as i32 };
        t.check()?;
        Ok(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.check().map_err(serde::ser::Error::custom)?;
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_text() {
        assert_eq!(Timestamp::new(0, 0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::new(1_704_164_645, 500_000_000).to_string(), "2024-01-02T03:04:05.500Z");
        assert_eq!(Timestamp::new(1_704_164_645, 1_000).to_string(), "2024-01-02T03:04:05.000001Z");
        assert_eq!(Timestamp::new(1_704_164_645, 7).to_string(), "2024-01-02T03:04:05.000000007Z");
        assert_eq!(Timestamp::new(-1, 0).to_string(), "1969-12-31T23:59:59Z");
        assert_eq!(Timestamp::new(MIN_SECONDS, 0).to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(Timestamp::new(MAX_SECONDS, 999_999_999).to_string(), "9999-12-31T23:59:59.999999999Z");
        assert_eq!(Timestamp::new(951_782_400, 0).to_string(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(ts("2024-01-02T03:04:05Z"), Timestamp::new(1_704_164_645, 0));
        assert_eq!(ts("2024-01-02T03:04:05.5Z"), Timestamp::new(1_704_164_645, 500_000_000));
        assert_eq!(ts("2024-01-02T05:04:05.5+02:00"), Timestamp::new(1_704_164_645, 500_000_000));
        assert_eq!(ts("2024-01-01T22:04:05-05:00"), Timestamp::new(1_704_164_645, 0));
        assert_eq!(ts("2024-01-02t03:04:05z"), Timestamp::new(1_704_164_645, 0));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-13-02T03:04:05Z",
            "2023-02-29T00:00:00Z",
            "2024-01-02T24:00:00Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05.1234567890Z",
            "2024-01-02T03:04:05+0200",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05Zjunk",
            "0000-12-31T23:59:59Z",
            "+024-01-02T03:04:05Z",
            "2024-01-02T03:04:05+24:00",
            "€€€€-01-02T03:04:05Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_refuses_unrepresentable_values() {
        assert!(serde_json::to_string(&Timestamp::new(0, -1)).is_err());
        assert!(serde_json::to_string(&Timestamp::new(MAX_SECONDS + 1, 0)).is_err());
        assert_eq!(serde_json::to_string(&Timestamp::new(0, 0)).unwrap(), "\"1970-01-01T00:00:00Z\"");
    }

    #[test]
    fn unix_millis_always_with_three_fraction_digits() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_704_164_645_500), "2024-01-02T03:04:05.500Z");
        assert_eq!(rfc3339_millis(1_704_164_645_007), "2024-01-02T03:04:05.007Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_unix_millis(-1500), Timestamp::new(-2, 500_000_000));
    }

    #[test]
    fn system_time_conversions() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        let ts = Timestamp::from(t);
        assert_eq!(ts, Timestamp::new(-2, 500_000_000));
        assert_eq!(SystemTime::from(ts), t);
    }

    proptest! {
        #[test]
        fn text_round_trips(seconds in MIN_SECONDS..=MAX_SECONDS, nanos in 0i32..1_000_000_000) {
            let t = Timestamp::new(seconds, nanos);
            prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        }

        #[test]
        fn millis_text_parses_back(ms in MIN_SECONDS * 1000..=MAX_SECONDS * 1000 + 999) {
            let text = rfc3339_millis(ms);
            prop_assert_eq!(text.len(), 24);
            prop_assert_eq!(text.parse::<Timestamp>(), Ok(Timestamp::from_unix_millis(ms)));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Timestamp>();
        }
    }
}
