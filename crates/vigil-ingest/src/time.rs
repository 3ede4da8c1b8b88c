//! When an event happened.

use vigil_event::{Event, Value};

/// Fields that carry an event's own time, most specific first: the EVTX
/// `System/TimeCreated`, the ECS and shipper conventions, Sysmon's
/// `UtcTime`, and the bare `time` some loggers write.
const TIME_FIELDS: &[&str] = &[
    "TimeCreated_SystemTime",
    "@timestamp",
    "timestamp",
    "UtcTime",
    "time",
];

/// RFC 3339 in UTC with microseconds, from nanoseconds since the epoch:
/// how every time Vigil writes out looks.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The event's time in nanoseconds since the Unix epoch: the reader's
/// timestamp when it set one, else the first of the time fields
/// (`TimeCreated_SystemTime`, `@timestamp`, `timestamp`, `UtcTime`,
/// `time`) that holds an RFC 3339 time or a `YYYY-MM-DD hh:mm:ss[.f]` one
/// (read as UTC, as Sysmon writes `UtcTime`). `None` when the event
/// carries no time.
pub fn event_time(event: &Event) -> Option<i64> {
    if let Some(ts) = event.meta.timestamp_ns {
        return Some(ts);
    }
    TIME_FIELDS.iter().find_map(|f| match event.get(f) {
        Some(Value::Str(s)) => parse_time(s),
        _ => None,
    })
}

/// Nanoseconds since the epoch from an RFC 3339 time or a
/// `YYYY-MM-DD hh:mm:ss[.f]` one (read as UTC); `None` for anything else.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Some(ns) = parse_utc_fast(s.as_bytes()) {
        return Some(ns);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()?
        .and_utc()
        .timestamp_nanos_opt()
}

/// `YYYY-MM-DDThh:mm:ss[.f…]Z`, the one shape EVTX and most shippers
/// write, without chrono's general parser: every EVTX event's time goes
/// through here, and this is several times faster. `None` for any other
/// shape (then chrono decides).
fn parse_utc_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b.len() > 30 || b[b.len() - 1] != b'Z' {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let nanos = match frac {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
            let n = num(20..20 + digits.len())?;
            n * 10i64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    // Days since 1970-01-01 in the proleptic Gregorian calendar (Howard
    // Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + min * 60 + sec;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path agrees with chrono on every shape it takes, and
    /// leaves the rest to it.
    #[test]
    fn fast_utc_parse_agrees_with_chrono() {
        let chrono_ns = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..20_000 {
            let frac = match next(4) {
                0 => String::new(),
                1 => format!(".{:03}", next(1000)),
                2 => format!(".{:06}", next(1_000_000)),
                _ => format!(".{:07}", next(10_000_000)),
            };
            let s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
                1601 + next(700),
                1 + next(12),
                1 + next(31),
                next(24),
                next(60),
                next(60)
            );
            assert_eq!(parse_utc_fast(s.as_bytes()), chrono_ns(&s), "{s}");
        }
        for s in [
            "2019-02-29T00:00:00Z",
            "2020-02-29T23:59:59.9999999Z",
            "2000-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2019-13-01T00:00:00Z",
            "2019-07-19T24:00:00Z",
            "2019-07-19T14:43:46.Z",
            "2019-07-19T14:43:46.1234567890Z",
            "2019-07-19T14:43:4aZ",
        ] {
            let fast = parse_utc_fast(s.as_bytes());
            assert!(fast.is_none() || fast == chrono_ns(s), "{s}");
            assert_eq!(parse_time(s), chrono_ns(s), "{s}");
        }
        assert_eq!(
            parse_time("2019-07-19T16:43:46+02:00"),
            parse_time("2019-07-19T14:43:46Z")
        );
    }

    #[test]
    fn reader_timestamp_wins_over_fields() {
        let mut e = Event::new();
        e.push("@timestamp", "2026-11-20T10:01:05Z");
        e.meta.timestamp_ns = Some(7);
        assert_eq!(event_time(&e), Some(7));
    }

    #[test]
    fn fields_in_order_skipping_unparsable() {
        let mut e = Event::new();
        e.push("TimeCreated_SystemTime", "not a time");
        e.push("UtcTime", "2026-11-20 10:01:05.5");
        e.push("@timestamp", "2026-11-20T12:01:05+02:00");
        assert_eq!(event_time(&e), Some(1_795_168_865_000_000_000));
        let mut e = Event::new();
        e.push("UtcTime", "2026-11-20 10:01:05.5");
        assert_eq!(event_time(&e), Some(1_795_168_865_500_000_000));
        assert_eq!(event_time(&Event::new()), None);
    }
}
