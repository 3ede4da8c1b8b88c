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
/// timestamp when it set one, else the first of [`TIME_FIELDS`] that holds
/// an RFC 3339 time or a `YYYY-MM-DD hh:mm:ss[.f]` one (read as UTC, as
/// Sysmon writes `UtcTime`). `None` when the event carries no time.
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
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()?
        .and_utc()
        .timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

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
