//! When and from where an account may be used: allowed hours, weekdays, holidays and source
//! networks (001-20-tech-2-5: no use outside working hours or on holidays; 001-20-tech-1-6:
//! the addresses authorised users may connect from).
//!
//! A window is configured per role in `mamori.toml` (`[auth.access.<role>]`) and may be set
//! per account, where it **replaces** the role's window: an administrator who gives one
//! night-shift clerk other hours does so deliberately, and the change is audited. A login
//! outside the window is refused after the credentials were checked, and a session used
//! outside it (the hours ended, or the token arrives from another network) ends.
//!
//! Times are local wall-clock times at a fixed UTC offset (`[auth] local_time_offset`,
//! default `+09:00`: Japan has no daylight saving time).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, OffsetDateTime, Time, UtcOffset, Weekday};

use crate::{CoreError, Result};

/// `HH:MM-HH:MM`, start inclusive, end exclusive. An end before the start wraps past
/// midnight (`22:00-06:00`); `24:00` is accepted as an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    start_minute: u16,
    end_minute: u16,
}

impl Hours {
    fn contains(self, t: Time) -> bool {
        let m = u16::from(t.hour()) * 60 + u16::from(t.minute());
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&m)
        } else {
            m >= self.start_minute || m < self.end_minute
        }
    }

    /// Whether the window is open at `t` on the day the night shift started: a wrapped
    /// window's early-morning part belongs to the previous day.
    fn starts_previous_day(self, t: Time) -> bool {
        let m = u16::from(t.hour()) * 60 + u16::from(t.minute());
        self.start_minute > self.end_minute && m < self.end_minute
    }
}

fn parse_clock(s: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl FromStr for Hours {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || CoreError::InvalidAccessWindow(format!("hours `{s}`: expected HH:MM-HH:MM, e.g. 08:00-20:00"));
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let start_minute = parse_clock(a.trim(), false).ok_or_else(bad)?;
        let end_minute = parse_clock(b.trim(), true).ok_or_else(bad)?;
        if start_minute == end_minute % (24 * 60) {
            return Err(CoreError::InvalidAccessWindow(format!(
                "hours `{s}`: start and end are the same time; leave hours out for no limit"
            )));
        }
        Ok(Self { start_minute, end_minute })
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start_minute), hm(self.end_minute))
    }
}

const DAY_NAMES: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn day_name(d: Weekday) -> &'static str {
    DAY_NAMES.iter().find(|(_, w)| *w == d).map_or("?", |(n, _)| n)
}

/// Parses `mon`, `mon-fri` or `mon,wed,fri` (and lists of those) into weekdays, in week order.
pub fn parse_days<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Weekday>> {
    let index = |name: &str| {
        DAY_NAMES.iter().position(|(n, _)| n.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
            CoreError::InvalidAccessWindow(format!(
                "day `{}`: expected mon, tue, wed, thu, fri, sat or sun",
                name.trim()
            ))
        })
    };
    let mut on = [false; 7];
    for item in items {
        for part in item.split(',').filter(|p| !p.trim().is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (index(a)?, index(b)?);
                    if a > b {
                        return Err(CoreError::InvalidAccessWindow(format!(
                            "days `{part}`: a range runs from mon to sun"
                        )));
                    }
                    on[a..=b].iter_mut().for_each(|d| *d = true);
                }
                None => on[index(part)?] = true,
            }
        }
    }
    Ok(DAY_NAMES.iter().zip(on).filter(|(_, on)| *on).map(|((_, w), _)| *w).collect())
}

/// Why a window refused an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowRefusal {
    Hours,
    Day,
    Holiday,
    Network,
}

impl fmt::Display for WindowRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowRefusal::Hours => "outside the allowed hours",
            WindowRefusal::Day => "not an allowed day of the week",
            WindowRefusal::Holiday => "a holiday",
            WindowRefusal::Network => "source address outside the allowed networks",
        })
    }
}

/// When and from where an account may be used. Every part left empty is unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessWindow {
    /// Allowed local hours, e.g. `08:00-20:00`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hours_serde")]
    pub hours: Option<Hours>,
    /// Allowed weekdays, e.g. `["mon-fri"]`; empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "days_serde")]
    pub days: Vec<Weekday>,
    /// Closed on the holidays listed in `[auth] holidays`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed_on_holidays: bool,
    /// Allowed source networks, e.g. `["10.0.0.0/8"]`; empty: any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<IpNet>,
}

impl AccessWindow {
    pub fn is_unrestricted(&self) -> bool {
        self.hours.is_none() && self.days.is_empty() && !self.closed_on_holidays && self.networks.is_empty()
    }

    /// Checks an access at `now` from `source` (`None`: no network address, i.e. a local
    /// process, which the network part does not restrict). `holidays` are local dates.
    pub fn check(
        &self,
        now: OffsetDateTime,
        offset: UtcOffset,
        holidays: &[Date],
        source: Option<IpAddr>,
    ) -> std::result::Result<(), WindowRefusal> {
        if let Some(ip) = source
            && !self.networks.is_empty()
            && !self.networks.iter().any(|n| n.contains(&ip))
        {
            return Err(WindowRefusal::Network);
        }
        let local = now.to_offset(offset);
        // A night shift (22:00-06:00) that started on an allowed day may run into the next.
        let day = match self.hours {
            Some(h) if h.starts_previous_day(local.time()) => local.date().previous_day().unwrap_or(local.date()),
            _ => local.date(),
        };
        if self.hours.is_some_and(|h| !h.contains(local.time())) {
            return Err(WindowRefusal::Hours);
        }
        if !self.days.is_empty() && !self.days.contains(&day.weekday()) {
            return Err(WindowRefusal::Day);
        }
        if self.closed_on_holidays && holidays.contains(&day) {
            return Err(WindowRefusal::Holiday);
        }
        Ok(())
    }

    /// The stored form (compact JSON), as kept in the user's row.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a window always serialises")
    }

    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| CoreError::InvalidAccessWindow(e.to_string()))
    }
}

impl fmt::Display for AccessWindow {
    /// One line for rosters and audit reasons: `08:00-20:00 mon-fri no-holidays 10.0.0.0/8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unrestricted() {
            return f.write_str("any time, any network");
        }
        let mut parts = Vec::new();
        if let Some(h) = self.hours {
            parts.push(h.to_string());
        }
        if !self.days.is_empty() {
            parts.push(self.days.iter().map(|d| day_name(*d)).collect::<Vec<_>>().join(","));
        }
        if self.closed_on_holidays {
            parts.push("no-holidays".into());
        }
        if !self.networks.is_empty() {
            parts.push(self.networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
        }
        f.write_str(&parts.join(" "))
    }
}

mod hours_serde {
    use super::*;

    pub fn serialize<S: Serializer>(h: &Option<Hours>, s: S) -> std::result::Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_str(&h.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Hours>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

mod days_serde {
    use super::*;

    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(days.iter().map(|d| day_name(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Weekday>, D::Error> {
        let items: Vec<String> = Vec::deserialize(d)?;
        parse_days(items.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime, offset};

    use super::*;

    const JST: UtcOffset = offset!(+9);

    fn office() -> AccessWindow {
        AccessWindow {
            hours: Some("08:00-20:00".parse().unwrap()),
            days: parse_days(["mon-fri"]).unwrap(),
            closed_on_holidays: true,
            networks: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    #[test]
    fn office_hours_in_japan_time() {
        let w = office();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        // Monday 2026-12-07 09:00 JST is 00:00 UTC.
        assert_eq!(w.check(datetime!(2026-12-07 00:00 UTC), JST, &[], Some(inside)), Ok(()));
        // 19:59 JST inside, 20:00 JST outside (end exclusive), 07:59 JST outside.
        assert_eq!(w.check(datetime!(2026-12-07 10:59 UTC), JST, &[], Some(inside)), Ok(()));
        assert_eq!(w.check(datetime!(2026-12-07 11:00 UTC), JST, &[], Some(inside)), Err(WindowRefusal::Hours));
        assert_eq!(w.check(datetime!(2026-12-06 22:59 UTC), JST, &[], Some(inside)), Err(WindowRefusal::Hours));
        // Saturday 2026-12-12 10:00 JST.
        assert_eq!(w.check(datetime!(2026-12-12 01:00 UTC), JST, &[], Some(inside)), Err(WindowRefusal::Day));
        // A listed holiday on a Wednesday.
        let holidays = [date!(2026 - 12 - 30)];
        assert_eq!(w.check(datetime!(2026-12-30 01:00 UTC), JST, &holidays, Some(inside)), Err(WindowRefusal::Holiday));
        // Another network, or IPv6 outside the list.
        for other in ["192.168.1.5", "::1"] {
            assert_eq!(
                w.check(datetime!(2026-12-07 01:00 UTC), JST, &[], Some(other.parse().unwrap())),
                Err(WindowRefusal::Network)
            );
        }
        // A local process without an address is not restricted by network, still by time.
        assert_eq!(w.check(datetime!(2026-12-07 01:00 UTC), JST, &[], None), Ok(()));
        assert_eq!(w.check(datetime!(2026-12-07 12:00 UTC), JST, &[], None), Err(WindowRefusal::Hours));
    }

    #[test]
    fn night_shift_wraps_midnight_and_belongs_to_its_start_day() {
        let w = AccessWindow {
            hours: Some("22:00-06:00".parse().unwrap()),
            days: parse_days(["fri"]).unwrap(),
            ..AccessWindow::default()
        };
        // Friday 23:00 JST and Saturday 05:00 JST belong to Friday's shift.
        assert_eq!(w.check(datetime!(2026-12-11 14:00 UTC), JST, &[], None), Ok(()));
        assert_eq!(w.check(datetime!(2026-12-11 20:00 UTC), JST, &[], None), Ok(()));
        // Saturday 06:00 JST is outside the hours; Friday 05:00 belongs to Thursday's shift.
        assert_eq!(w.check(datetime!(2026-12-11 21:00 UTC), JST, &[], None), Err(WindowRefusal::Hours));
        assert_eq!(w.check(datetime!(2026-12-10 20:00 UTC), JST, &[], None), Err(WindowRefusal::Day));
    }

    #[test]
    fn parsing_refuses_nonsense_and_round_trips() {
        for bad in ["8:00-20:00", "08:00", "25:00-26:00", "08:00-08:00", "00:00-24:00", "08:60-09:00", "ab:cd-ef:gh"] {
            assert!(bad.parse::<Hours>().is_err(), "{bad}");
        }
        assert!("20:00-24:00".parse::<Hours>().is_ok());
        assert!(parse_days(["fri-mon"]).is_err());
        assert!(parse_days(["funday"]).is_err());
        assert_eq!(parse_days(["mon,wed", "fri"]).unwrap(), [Weekday::Monday, Weekday::Wednesday, Weekday::Friday]);
        let w = office();
        let json = w.to_json();
        assert_eq!(
            json,
            r#"{"hours":"08:00-20:00","days":["mon","tue","wed","thu","fri"],"closed_on_holidays":true,"networks":["10.0.0.0/8"]}"#
        );
        assert_eq!(AccessWindow::from_json(&json).unwrap(), w);
        assert_eq!(w.to_string(), "08:00-20:00 mon,tue,wed,thu,fri no-holidays 10.0.0.0/8");
        assert!(AccessWindow::from_json(r#"{"hours":"08:00-20:00","colour":"red"}"#).is_err());
        assert!(AccessWindow::from_json(r#"{"networks":["10.0.0.300/8"]}"#).is_err());
        assert!(AccessWindow::default().is_unrestricted());
    }
}
