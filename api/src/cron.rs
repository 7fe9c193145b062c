//! CronJob schedules: the five-field cron syntax Kubernetes accepts
//! (`minute hour day-of-month month day-of-week`, names, ranges, steps and
//! the `@hourly`-style macros), read by the `croner` crate, in a time zone
//! from the system's tz database (jiff), as `spec.timeZone` names it.
//!
//! croner works on chrono's `TimeZone` trait; [`Zone`] adapts a jiff time
//! zone to it, so no second tz database is compiled in.

use std::fmt;

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, TimeZone};
use croner::parser::{CronParser, Seconds, Year};

/// Why a schedule or time zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unparseable schedule {schedule:?}: {reason}")]
    Schedule { schedule: String, reason: String },
    #[error("cannot use TZ or CRON_TZ in schedule, use the timeZone field instead")]
    TzInSchedule,
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    zone: Zone,
}

impl Schedule {
    /// Parse `schedule` in `time_zone` (an IANA name; `None`: this
    /// machine's zone, as kube-controller-manager uses its own).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let trimmed = schedule.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err(ScheduleError::TzInSchedule);
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(trimmed).map_err(|e| ScheduleError::Schedule {
            schedule: schedule.to_string(),
            reason: e.to_string(),
        })?;
        let zone = match time_zone {
            None => jiff::tz::TimeZone::system(),
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
        };
        Ok(Schedule {
            cron,
            zone: Zone(zone),
        })
    }

    /// The first time the schedule fires strictly after `t`.
    pub fn next_after(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let start = self.zone.timestamp_opt(t.as_second(), 0).single()?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        jiff::Timestamp::from_second(next.timestamp()).ok()
    }

    /// The last time the schedule fires at or before `t`.
    pub fn latest_until(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let at = self.zone.timestamp_opt(t.as_second(), 0).single()?;
        let prev = self.cron.find_previous_occurrence(&at, true).ok()?;
        jiff::Timestamp::from_second(prev.timestamp()).ok()
    }

    /// The times it fires in `(after, until]`, at most `max` of them, and
    /// whether there were more.
    pub fn between(
        &self,
        after: jiff::Timestamp,
        until: jiff::Timestamp,
        max: usize,
    ) -> (Vec<jiff::Timestamp>, bool) {
        let mut found = Vec::new();
        let mut t = after;
        while let Some(next) = self.next_after(t).filter(|n| *n <= until) {
            if found.len() == max {
                return (found, true);
            }
            found.push(next);
            t = next;
        }
        (found, false)
    }
}

/// A jiff time zone as chrono's `TimeZone`.
#[derive(Debug, Clone)]
pub struct Zone(jiff::tz::TimeZone);

/// An offset that remembers its zone (chrono recovers a zone from it).
#[derive(Debug, Clone)]
pub struct ZoneOffset {
    zone: jiff::tz::TimeZone,
    fixed: FixedOffset,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fixed)
    }
}

impl Zone {
    fn offset(&self, o: jiff::tz::Offset) -> ZoneOffset {
        ZoneOffset {
            zone: self.0.clone(),
            // a tz database offset is always within a day
            fixed: FixedOffset::east_opt(o.seconds())
                .unwrap_or(FixedOffset::east_opt(0).expect("zero offset")),
        }
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        Zone(offset.zone.clone())
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        match local.and_hms_opt(0, 0, 0) {
            Some(dt) => self.offset_from_local_datetime(&dt),
            None => MappedLocalTime::None,
        }
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        use chrono::{Datelike, Timelike};
        let civil = jiff::civil::DateTime::new(
            local.year() as i16,
            local.month() as i8,
            local.day() as i8,
            local.hour() as i8,
            local.minute() as i8,
            local.second() as i8,
            0,
        );
        let Ok(civil) = civil else {
            return MappedLocalTime::None;
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            jiff::tz::AmbiguousOffset::Unambiguous { offset } => {
                MappedLocalTime::Single(self.offset(offset))
            }
            jiff::tz::AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            jiff::tz::AmbiguousOffset::Fold { before, after } => {
                MappedLocalTime::Ambiguous(self.offset(before), self.offset(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let ts = jiff::Timestamp::from_second(utc.and_utc().timestamp())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.offset(self.0.to_offset(ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn next_times() {
        let table = [
            (
                "*/5 * * * *",
                "UTC",
                "2026-01-01T10:02:00Z",
                "2026-01-01T10:05:00Z",
            ),
            (
                "*/5 * * * *",
                "UTC",
                "2026-01-01T10:05:00Z",
                "2026-01-01T10:10:00Z",
            ),
            (
                "@hourly",
                "UTC",
                "2026-01-01T10:02:00Z",
                "2026-01-01T11:00:00Z",
            ),
            (
                "0 9 * * MON",
                "UTC",
                "2026-01-01T10:00:00Z",
                "2026-01-05T09:00:00Z",
            ),
            // 09:00 in New York in winter is 14:00 UTC
            (
                "0 9 * * *",
                "America/New_York",
                "2026-01-01T15:00:00Z",
                "2026-01-02T14:00:00Z",
            ),
            // and in summer 13:00 UTC
            (
                "0 9 * * *",
                "America/New_York",
                "2026-07-01T15:00:00Z",
                "2026-07-02T13:00:00Z",
            ),
            // 02:30 does not exist on the spring-forward day in Berlin
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2026-03-28T12:00:00Z",
                "2026-03-29T01:30:00Z",
            ),
        ];
        for (schedule, zone, after, want) in table {
            let s = Schedule::parse(schedule, Some(zone)).expect(schedule);
            let got = s.next_after(ts(after));
            // a skipped local time fires at or after the change; accept
            // croner's choice but never before `after` and never a day late
            if schedule == "30 2 * * *" {
                let got = got.expect("a time");
                assert!(got > ts(after) && got < ts("2026-03-30T00:00:00Z"), "{got}");
                continue;
            }
            assert_eq!(got, Some(ts(want)), "{schedule} in {zone} after {after}");
        }
    }

    #[test]
    fn refusals() {
        for (schedule, zone) in [
            ("* * * *", None),
            ("61 * * * *", None),
            ("* * * * * *", None),
            ("not a schedule", None),
            ("", None),
        ] {
            assert!(
                matches!(
                    Schedule::parse(schedule, zone),
                    Err(ScheduleError::Schedule { .. })
                ),
                "{schedule:?}"
            );
        }
        assert_eq!(
            Schedule::parse("TZ=UTC * * * * *", None).err(),
            Some(ScheduleError::TzInSchedule)
        );
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")).err(),
            Some(ScheduleError::TimeZone("Mars/Olympus".into()))
        );
    }

    #[test]
    fn missed_runs_are_counted_and_bounded() {
        let s = Schedule::parse("* * * * *", Some("UTC")).expect("schedule");
        let (runs, more) = s.between(ts("2026-01-01T10:00:30Z"), ts("2026-01-01T10:03:00Z"), 100);
        assert_eq!(runs.len(), 3);
        assert!(!more);
        let (runs, more) = s.between(ts("2026-01-01T10:00:00Z"), ts("2026-01-01T13:00:00Z"), 100);
        assert_eq!(runs.len(), 100);
        assert!(more);
    }
}
