//! Presence sessions as Microsoft describes them, on the emulator's clock.
//!
//! A user's presence is an aggregate of several sessions: each Teams client (here: the
//! fixture's `presence`, when it is online), each application's session set with
//! `setPresence` (one per `sessionId`), and over all of them the user-preferred presence
//! (`setUserPreferredPresence`). Sources:
//! - <https://learn.microsoft.com/en-us/graph/api/presence-setpresence> ("Presence
//!   sessions", "Timeout, expiration, and keep alive"): user-configured over
//!   app-configured; among sessions DoNotDisturb > Busy > Available > Away; an
//!   `Available` session times out after 5 minutes to `Available/AvailableInactive`, then
//!   after another 5 minutes to `Away/Away`; an expired session is `Offline`.
//! - <https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>:
//!   the preferred presence shows only while at least one session exists (otherwise
//!   `Offline`); its default expiry is 1 day for DoNotDisturb and Busy, 7 days otherwise.
//! - <https://learn.microsoft.com/en-us/graph/api/presence-setstatusmessage>: a status
//!   message with an optional expiry.
//!
//! Nothing is stored as "current presence": [`UserSessions::observe`] computes it from the
//! sessions and the time, so fades and expiries happen exactly when the clock passes them.
//! `sequenceNumber` moves whenever an observed aggregate differs from the last one seen
//! (every write observes before and after), so a poller can tell a change by it.

use jiff::{SignedDuration, Timestamp};

use crate::tenant::Presence;

/// The first timeout of an `Available` session (setPresence page: 5 minutes), and the
/// second one after it (another 5 minutes).
pub(crate) const FADE: SignedDuration = SignedDuration::from_mins(5);

/// `setPresence` combinations Microsoft documents as supported (v1.0 page, table
/// "Supported combinations of availability and activity").
pub const APP_COMBINATIONS: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// `setUserPreferredPresence` combinations (its v1.0 page, "supported combinations").
pub const PREFERRED_COMBINATIONS: [(&str, &str); 6] = [
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// The documented pair spelled as Graph spells it, whatever the caller's case.
pub(crate) fn documented(
    table: &[(&'static str, &'static str)],
    availability: &str,
    activity: &str,
) -> Option<(&'static str, &'static str)> {
    table
        .iter()
        .copied()
        .find(|(av, ac)| av.eq_ignore_ascii_case(availability) && ac.eq_ignore_ascii_case(activity))
}

/// One application's session for a user.
#[derive(Debug, Clone)]
struct AppSession {
    id: String,
    availability: &'static str,
    activity: &'static str,
    set_at: Timestamp,
    expires_at: Timestamp,
}

impl AppSession {
    /// Its state at `now` (after the fade), or none once it has expired.
    fn at(&self, now: Timestamp) -> Option<(String, String)> {
        if now >= self.expires_at {
            return None;
        }
        let idle = now.duration_since(self.set_at);
        if self.availability == "Available" && idle >= FADE * 2 {
            Some(("Away".into(), "Away".into()))
        } else if self.availability == "Available" && idle >= FADE {
            // The page's words: "Available/AvailableInactive" (availability/activity).
            Some(("Available".into(), "AvailableInactive".into()))
        } else {
            Some((self.availability.into(), self.activity.into()))
        }
    }
}

/// A status message as set, with its optional expiry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatusMessage {
    pub content: String,
    pub content_type: String,
    pub published: Timestamp,
    /// The instant it expires, and the `dateTimeTimeZone` the caller gave for it.
    pub expiry: Option<(Timestamp, String, String)>,
}

/// What a reader sees at one instant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub availability: String,
    pub activity: String,
    /// From `setStatusMessage`; none means the fixture's message (if any).
    pub status: Option<StatusMessage>,
    /// How many times the aggregate has changed: part of `sequenceNumber`.
    pub generation: u64,
}

/// Precedence among sessions (setPresence page): DoNotDisturb > Busy > Available > Away.
/// Where the page is silent (BeRightBack, the idle variants) they sit beside their
/// nearest documented state: no source.
fn rank(availability: &str) -> u8 {
    match availability.to_ascii_lowercase().as_str() {
        "donotdisturb" => 5,
        "busy" | "busyidle" => 4,
        "available" | "availableidle" => 3,
        "berightback" => 2,
        "away" => 1,
        _ => 0,
    }
}

/// Every session of one user, the preferred presence and the status message.
#[derive(Debug, Default, Clone)]
pub(crate) struct UserSessions {
    apps: Vec<AppSession>,
    preferred: Option<(&'static str, &'static str, Timestamp)>,
    status: Option<StatusMessage>,
    /// An application has published for this user: with no session left the user is
    /// `Offline` rather than the fixture's "never seen" `PresenceUnknown`.
    published: bool,
    last: Option<(String, String, Option<StatusMessage>)>,
    generation: u64,
}

impl UserSessions {
    /// The aggregate at `now` over the app sessions and the Teams client the fixture
    /// describes (`base`, a session when it is online).
    fn aggregate(&self, base: Option<&Presence>, now: Timestamp) -> (String, String) {
        let client = base.filter(|p| {
            !p.availability.eq_ignore_ascii_case("Offline")
                && !p.availability.eq_ignore_ascii_case("PresenceUnknown")
        });
        let mut best: Option<(u8, Timestamp, String, String)> = client.map(|p| {
            (
                rank(&p.availability),
                Timestamp::MIN,
                p.availability.to_string(),
                p.activity.to_string(),
            )
        });
        for s in &self.apps {
            if let Some((av, ac)) = s.at(now) {
                let key = (rank(&av), s.set_at);
                if best.as_ref().is_none_or(|b| key > (b.0, b.1)) {
                    best = Some((key.0, key.1, av, ac));
                }
            }
        }
        let Some((_, _, av, ac)) = best else {
            // No session at all: the preferred presence does not show (its page).
            return match base {
                Some(p) => (p.availability.to_string(), p.activity.to_string()),
                None if self.published => ("Offline".into(), "Offline".into()),
                None => ("PresenceUnknown".into(), "PresenceUnknown".into()),
            };
        };
        match self.preferred {
            Some((pav, pac, until)) if now < until => (pav.into(), pac.into()),
            _ => (av, ac),
        }
    }

    /// What a reader sees now; moves the generation when it differs from the last look.
    pub fn observe(&mut self, base: Option<&Presence>, now: Timestamp) -> Seen {
        let (availability, activity) = self.aggregate(base, now);
        let status = self
            .status
            .clone()
            .filter(|m| m.expiry.as_ref().is_none_or(|(at, _, _)| now < *at));
        let current = (availability.clone(), activity.clone(), status.clone());
        if self.last.as_ref().is_some_and(|l| *l != current) {
            self.generation += 1;
        }
        self.last = Some(current);
        Seen {
            availability,
            activity,
            status,
            generation: self.generation,
        }
    }

    /// `setPresence`: create or refresh the session `id` (a keep-alive restarts its timeout).
    pub fn set_app(
        &mut self,
        id: &str,
        (availability, activity): (&'static str, &'static str),
        expires_in: SignedDuration,
        now: Timestamp,
    ) {
        self.apps.retain(|s| !s.id.eq_ignore_ascii_case(id));
        self.apps.push(AppSession {
            id: id.to_string(),
            availability,
            activity,
            set_at: now,
            expires_at: now.checked_add(expires_in).unwrap_or(Timestamp::MAX),
        });
        self.published = true;
    }

    /// `clearPresence`: the session `id` ends.
    pub fn clear_app(&mut self, id: &str) {
        self.apps.retain(|s| !s.id.eq_ignore_ascii_case(id));
    }

    pub fn set_preferred(
        &mut self,
        (availability, activity): (&'static str, &'static str),
        expires_in: SignedDuration,
        now: Timestamp,
    ) {
        let until = now.checked_add(expires_in).unwrap_or(Timestamp::MAX);
        self.preferred = Some((availability, activity, until));
    }

    pub fn clear_preferred(&mut self) {
        self.preferred = None;
    }

    pub fn set_status(&mut self, message: StatusMessage) {
        self.status = Some(message);
    }
}

/// The default expiry of a preferred presence (its page): 1 day for DoNotDisturb and
/// Busy, 7 days for the others.
pub(crate) fn preferred_default_expiry(availability: &str) -> SignedDuration {
    if availability == "DoNotDisturb" || availability == "Busy" {
        SignedDuration::from_hours(24)
    } else {
        SignedDuration::from_hours(24 * 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_available_session_fades_then_expires() {
        let mut u = UserSessions::default();
        let t0 = t("2026-03-02T08:00:00Z");
        u.set_app(
            "a",
            ("Available", "Available"),
            SignedDuration::from_hours(1),
            t0,
        );
        let at = |u: &mut UserSessions, mins: i64| {
            let s = u.observe(None, t0 + SignedDuration::from_mins(mins));
            (s.availability, s.activity, s.generation)
        };
        assert_eq!(at(&mut u, 4), ("Available".into(), "Available".into(), 0));
        assert_eq!(
            at(&mut u, 5),
            ("Available".into(), "AvailableInactive".into(), 1)
        );
        assert_eq!(at(&mut u, 10), ("Away".into(), "Away".into(), 2));
        assert_eq!(at(&mut u, 59), ("Away".into(), "Away".into(), 2));
        assert_eq!(at(&mut u, 60), ("Offline".into(), "Offline".into(), 3));
    }

    #[test]
    fn preferred_wins_only_while_a_session_lives() {
        let mut u = UserSessions::default();
        let t0 = t("2026-03-02T08:00:00Z");
        u.set_preferred(
            ("DoNotDisturb", "DoNotDisturb"),
            SignedDuration::from_hours(24),
            t0,
        );
        assert_eq!(u.observe(None, t0).availability, "PresenceUnknown");
        u.set_app("a", ("Busy", "InACall"), SignedDuration::from_mins(5), t0);
        assert_eq!(u.observe(None, t0).availability, "DoNotDisturb");
        u.clear_preferred();
        assert_eq!(u.observe(None, t0).activity, "InACall");
    }
}
