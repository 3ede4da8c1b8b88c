//! `--from`/`--to`: hunting one stretch of time.
//!
//! Events outside the window are read and counted, but no rule sees them
//! (correlations neither). An event without a time cannot be placed, so
//! with a window it is left out too, and counted apart.

use std::sync::atomic::{AtomicU64, Ordering};

/// The time window, both ends inclusive, in nanoseconds since the epoch.
#[derive(Debug)]
pub struct Window {
    from: Option<i64>,
    to: Option<i64>,
    /// Events with a time outside the window.
    pub outside: AtomicU64,
    /// Events without a time.
    pub untimed: AtomicU64,
}

impl Window {
    /// The window of `--from FROM --to TO`; `None` when neither is given.
    pub fn new(from: Option<&str>, to: Option<&str>) -> anyhow::Result<Option<Window>> {
        if from.is_none() && to.is_none() {
            return Ok(None);
        }
        let from = from.map(|s| parse_bound(s, false)).transpose()?;
        let to = to.map(|s| parse_bound(s, true)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            anyhow::ensure!(f <= t, "--from is after --to: the window is empty");
        }
        Ok(Some(Window {
            from,
            to,
            outside: AtomicU64::new(0),
            untimed: AtomicU64::new(0),
        }))
    }

    /// Whether rules should see an event of time `ts` (`None`: it has
    /// none); counts it when not.
    pub fn admits(&self, ts: Option<i64>) -> bool {
        let Some(ts) = ts else {
            self.untimed.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let inside = self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts <= t);
        if !inside {
            self.outside.fetch_add(1, Ordering::Relaxed);
        }
        inside
    }

    /// The window as the summary shows it.
    pub fn describe(&self) -> String {
        let end = |b: Option<i64>| b.map_or("…".to_string(), vigil_ingest::rfc3339);
        format!(
            "{} to {}: {} events outside it, {} without a time, left out",
            end(self.from),
            end(self.to),
            self.outside.load(Ordering::Relaxed),
            self.untimed.load(Ordering::Relaxed)
        )
    }
}

/// An RFC 3339 time, or one without a zone (UTC), or a bare date: the
/// start of that day for `--from`, its last nanosecond for `--to`, so that
/// `--from 2019-07-19 --to 2019-07-19` is that whole day.
fn parse_bound(s: &str, end_of_day: bool) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = d
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_utc().timestamp_nanos_opt());
        let day = day.ok_or_else(|| anyhow::anyhow!("{s}: out of range"))?;
        return Ok(if end_of_day {
            day + 86_400 * 1_000_000_000 - 1
        } else {
            day
        });
    }
    vigil_ingest::parse_time(s).ok_or_else(|| {
        anyhow::anyhow!(
            "{s}: not a time; give RFC 3339 (2019-07-19T14:43:46Z), \
             a UTC time (2019-07-19 14:43:46) or a date (2019-07-19)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Option<i64> {
        vigil_ingest::parse_time(t)
    }

    #[test]
    fn dates_cover_whole_days_and_both_ends_are_inclusive() {
        let w = Window::new(Some("2019-07-19"), Some("2019-07-19"))
            .unwrap()
            .unwrap();
        assert!(w.admits(at("2019-07-19T00:00:00Z")));
        assert!(w.admits(at("2019-07-19T23:59:59.999999Z")));
        assert!(!w.admits(at("2019-07-20T00:00:00Z")));
        assert!(!w.admits(at("2019-07-18T23:59:59Z")));
        assert!(!w.admits(None));
        assert_eq!(w.outside.load(Ordering::Relaxed), 2);
        assert_eq!(w.untimed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn open_ends_zones_and_bad_input() {
        let w = Window::new(Some("2019-07-19T14:00:00+02:00"), None)
            .unwrap()
            .unwrap();
        assert!(!w.admits(at("2019-07-19T11:59:59Z")));
        assert!(w.admits(at("2019-07-19T12:00:00Z")));
        assert!(w.admits(at("2030-01-01T00:00:00Z")));
        let w = Window::new(None, Some("2019-07-19 12:00:00"))
            .unwrap()
            .unwrap();
        assert!(w.admits(at("2019-07-19T12:00:00Z")));
        assert!(!w.admits(at("2019-07-19T12:00:00.000001Z")));
        assert!(Window::new(None, None).unwrap().is_none());
        let e = Window::new(Some("yesterday"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("yesterday: not a time"), "{e}");
        let e = Window::new(Some("2019-07-20"), Some("2019-07-19"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--from is after --to"), "{e}");
    }
}
