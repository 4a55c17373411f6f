//! Time as the tool meets it, in one place: the host's clock, the module's clock formats
//! (`asctime()` text of `AT+CIPSNTPTIME?`, Unix seconds of `AT+SYSTIMESTAMP?`), the earliest
//! time a synced module clock can show, and the one way times are printed.
//!
//! Both the driver (`at`) and the virtual module (`sim`) use these, so the text the
//! simulated firmware writes is the text the driver reads.
//!
//! Spec: `esp-at.md` §5.6 (`AT+CIPSNTPTIME?`), §5.7 (`AT+SYSTIMESTAMP`), §6.1 (clock sync).

use std::time::{SystemTime, UNIX_EPOCH};

use ::time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The earliest time a synced clock can show: certificates issued before this tool existed
/// cannot be checked against a clock that reads earlier, and 1970 is what an unsynced module
/// reads. Callers pass the device certificate's notBefore when they know it.
pub const PLAUSIBLE_SINCE: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// This computer's clock as Unix seconds.
pub fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// This computer's clock as nanoseconds since the Unix epoch (0 before it): a stamp that
/// tells apart names made in the same second.
pub fn host_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Parses asctime (`Thu Jan  1 00:00:12 1970`) as UTC Unix seconds.
pub fn parse_asctime(text: &str) -> Option<i64> {
    let mut it = text.split_whitespace();
    let _weekday = it.next()?;
    let month = it.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u8 + 1;
    let day: u8 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|p| p.parse::<u8>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let year: i32 = it.next()?.parse().ok()?;
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    let t = Time::from_hms(h, m, s).ok()?;
    Some(
        PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// `asctime()` of a Unix time: `Thu Jan  1 00:00:12 1970` (day space-padded), no `\n`.
pub fn asctime(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[t.weekday().number_days_from_monday() as usize],
        MONTHS[t.month() as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Formats Unix seconds as `2026-11-24 22:53:56 UTC`.
pub fn format_time(unix: i64) -> String {
    let format =
        ::time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_parses() {
        assert_eq!(parse_asctime("Thu Jan  1 00:00:12 1970"), Some(12));
        assert_eq!(
            parse_asctime("Fri Feb 22 13:45:11 2019"),
            Some(1_550_843_111)
        );
        assert_eq!(parse_asctime("garbage"), None);
        assert_eq!(parse_asctime("Thu Foo  1 00:00:12 1970"), None);
    }

    #[test]
    fn asctime_round_trips() {
        for t in [0, 12, 1_550_843_111, PLAUSIBLE_SINCE, 4_102_444_799] {
            assert_eq!(parse_asctime(&asctime(t)), Some(t), "{}", asctime(t));
        }
        assert_eq!(asctime(12), "Thu Jan  1 00:00:12 1970");
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(format_time(PLAUSIBLE_SINCE), "2025-01-01 00:00:00 UTC");
    }
}
