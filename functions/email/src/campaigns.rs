//! The campaigns and the rule that says when one is due for a user.
//!
//! [`Campaign`] is the fixed set of lifecycle emails (each has its templates); [`Rules`] is
//! their configuration, read from `campaigns.toml` (embedded) or `EMAIL_CAMPAIGNS_FILE`.
//! [`CampaignRule::due_window`] is the one definition of "1, 7 or 30 days old in their
//! timezone", used by the sweep to choose users and by the sender to refuse stale messages.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The configuration shipped with the code.
pub const DEFAULT_RULES: &str = include_str!("../campaigns.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Campaign {
    D1,
    D7,
    D30,
}

impl Campaign {
    pub const ALL: [Campaign; 3] = [Campaign::D1, Campaign::D7, Campaign::D30];

    pub fn as_str(self) -> &'static str {
        match self {
            Campaign::D1 => "d1",
            Campaign::D7 => "d7",
            Campaign::D30 => "d30",
        }
    }
}

impl fmt::Display for Campaign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Campaign {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Campaign::ALL
            .into_iter()
            .find(|campaign| campaign.as_str() == text)
            .ok_or_else(|| format!("unknown campaign {text:?} (expected d1, d7 or d30)"))
    }
}

/// One campaign's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRule {
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub days_after_signup: u32,
    /// Local hour (0–23) from which the campaign goes out on its day.
    pub send_hour: u32,
    /// Leave out users with a product event in this many hours before the sweep.
    pub skip_if_active_within_hours: Option<u32>,
}

fn enabled_by_default() -> bool {
    true
}

/// How long after it becomes due a campaign may still go out.
pub const SEND_WINDOW: Duration = Duration::hours(24);

impl CampaignRule {
    /// When the campaign is due for someone who signed up at `signed_up_at` and lives in
    /// `timezone`: `[start, end)`. A local time that does not exist (a spring-forward gap)
    /// moves to the first instant after the gap; an ambiguous one takes the earlier.
    pub fn due_window(
        &self,
        signed_up_at: DateTime<Utc>,
        timezone: Tz,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let signup_day: NaiveDate = signed_up_at.with_timezone(&timezone).date_naive();
        let day = signup_day + Duration::days(i64::from(self.days_after_signup));
        let mut local =
            day.and_time(NaiveTime::from_hms_opt(self.send_hour, 0, 0).unwrap_or_default());
        let start = loop {
            if let Some(start) = timezone.from_local_datetime(&local).earliest() {
                break start.with_timezone(&Utc);
            }
            local += Duration::minutes(15);
        };
        (start, start + SEND_WINDOW)
    }

    /// Whether the campaign is due at `now`.
    pub fn is_due(&self, signed_up_at: DateTime<Utc>, timezone: Tz, now: DateTime<Utc>) -> bool {
        let (start, end) = self.due_window(signed_up_at, timezone);
        start <= now && now < end
    }

    /// Signups that can be due at `now` lie in `(low, high]`: a coarse range the sweep gives
    /// the database (so the signup index is used) before deciding exactly with
    /// [`Self::is_due`]. The due time is the send hour after local midnight of the signup
    /// day plus N, so it falls within a day before `signup + N days + send_hour`; it is due
    /// for a day; a daylight-saving change in between moves wall clocks by up to an hour.
    pub fn signup_range(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let base = now - Duration::days(i64::from(self.days_after_signup));
        let hour = Duration::hours(i64::from(self.send_hour));
        (
            base - hour - Duration::hours(26) - SEND_WINDOW,
            base - hour + Duration::hours(26),
        )
    }
}

/// Every campaign's rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub d1: CampaignRule,
    pub d7: CampaignRule,
    pub d30: CampaignRule,
}

#[derive(Debug, thiserror::Error)]
#[error("campaign rules: {0}")]
pub struct RulesError(String);

impl Rules {
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let rules: Rules = toml::from_str(text).map_err(|error| RulesError(error.to_string()))?;
        for campaign in Campaign::ALL {
            let rule = rules.get(campaign);
            if rule.send_hour > 23 {
                return Err(RulesError(format!(
                    "{campaign}: send_hour {} is not an hour of the day",
                    rule.send_hour
                )));
            }
        }
        Ok(rules)
    }

    /// `EMAIL_CAMPAIGNS_FILE` if set, else the shipped rules.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RulesError> {
        match lookup("EMAIL_CAMPAIGNS_FILE") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| RulesError(format!("read {path}: {error}")))?;
                Self::parse(&text)
            }
            None => Self::parse(DEFAULT_RULES),
        }
    }

    pub fn get(&self, campaign: Campaign) -> &CampaignRule {
        match campaign {
            Campaign::D1 => &self.d1,
            Campaign::D7 => &self.d7,
            Campaign::D30 => &self.d30,
        }
    }

    pub fn get_mut(&mut self, campaign: Campaign) -> &mut CampaignRule {
        match campaign {
            Campaign::D1 => &mut self.d1,
            Campaign::D7 => &mut self.d7,
            Campaign::D30 => &mut self.d30,
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Self::parse(DEFAULT_RULES).expect("the shipped campaigns.toml is valid")
    }
}

/// The timezone to count a user's days in: theirs, else their workspace's, else UTC. A name
/// the tz database does not know is skipped, not fatal: one bad profile must not stop the
/// sweep for everyone.
pub fn timezone_of(user: Option<&str>, workspace: Option<&str>) -> Tz {
    [user, workspace]
        .into_iter()
        .flatten()
        .find_map(|name| name.trim().parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn rule(days: u32, hour: u32) -> CampaignRule {
        CampaignRule {
            enabled: true,
            days_after_signup: days,
            send_hour: hour,
            skip_if_active_within_hours: None,
        }
    }

    #[test]
    fn the_shipped_rules_parse() {
        let rules = Rules::default();
        assert_eq!(rules.d1.days_after_signup, 1);
        assert_eq!(rules.d7.skip_if_active_within_hours, Some(24));
        assert_eq!(rules.d30.days_after_signup, 30);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let text = DEFAULT_RULES.replacen("send_hour = 9", "send_hour = 24", 1);
        let error = Rules::parse(&text).unwrap_err().to_string();
        assert!(error.contains("d1: send_hour 24"), "{error}");
        let error = Rules::parse("[d1]\ndays_after_signup = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("send_hour") || error.contains("d7"),
            "{error}"
        );
    }

    #[test]
    fn days_are_counted_in_the_users_timezone() {
        // 23:30 on 1 March in New York is already 2 March in UTC.
        let signup = utc("2026-03-02T04:30:00Z");
        let new_york: Tz = "America/New_York".parse().unwrap();
        let (start, end) = rule(1, 9).due_window(signup, new_york);
        // Due 2 March 09:00 EST = 14:00 UTC, not 3 March.
        assert_eq!(start, utc("2026-03-02T14:00:00Z"));
        assert_eq!(end, utc("2026-03-03T14:00:00Z"));
        let (start, _) = rule(1, 9).due_window(signup, Tz::UTC);
        assert_eq!(start, utc("2026-03-03T09:00:00Z"));
    }

    #[test]
    fn a_send_hour_inside_a_spring_forward_gap_moves_after_it() {
        // Europe/Berlin skips 02:00–03:00 on 29 March 2026.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let (start, _) = rule(1, 2).due_window(utc("2026-03-28T10:00:00Z"), berlin);
        assert_eq!(start, utc("2026-03-29T01:00:00Z"), "03:00 CEST");
    }

    #[test]
    fn the_coarse_range_contains_every_due_signup() {
        let now = utc("2026-07-01T12:00:00Z");
        for days in [1, 7, 30] {
            for hour in [0, 9, 23] {
                let rule = rule(days, hour);
                let (low, high) = rule.signup_range(now);
                for zone in [
                    "Pacific/Kiritimati",
                    "Pacific/Pago_Pago",
                    "UTC",
                    "Asia/Kolkata",
                ] {
                    let tz: Tz = zone.parse().unwrap();
                    for minutes in (0..(60 * 24 * 40)).step_by(7) {
                        let signup = now - Duration::minutes(minutes);
                        if rule.is_due(signup, tz, now) {
                            assert!(
                                low < signup && signup <= high,
                                "{days} {hour} {zone} {signup}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_timezones_fall_back() {
        assert_eq!(
            timezone_of(Some("Mars/Olympus"), Some("Europe/Paris")),
            Tz::Europe__Paris
        );
        assert_eq!(timezone_of(None, Some("nonsense")), Tz::UTC);
        assert_eq!(
            timezone_of(Some("Asia/Tokyo"), Some("Europe/Paris")),
            Tz::Asia__Tokyo
        );
    }
}
