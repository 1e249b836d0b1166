//! [`PresenceEngine`]: the rules of ip-presence.md applied to batches of sign-ins over a
//! [`PresenceBackend`] that keeps the state. Each sign-in is classified
//! ([`super::classify`]), then applied (duplicates, discovery, access, observation);
//! the batch ends with the backend recomputing the days it touched, and pruning. Files of
//! sign-ins are read by the `file` module, on top of this one.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::backend::{Observation, PresenceBackend, RangeRef, SeenSignIn, UserRef};
use super::calendar::{Zone, timestamp_of};
use super::classify::{Candidate, NO_RANGE, Rules, Verdict};
use super::config::{ConfigError, PresenceConfig, PresenceMode};
use super::error::PresenceError;
use super::model::{
    AccessEvent, BatchReport, Counts, DayChange, EventSink, Override, Place, ProcessOptions,
    UserDayStatus,
};
use super::ranges::{IpRangeTable, suggested_block};
use super::signin::SignIn;

/// The engine: a validated configuration compiled for fast lookups.
#[derive(Debug, Clone)]
pub struct PresenceEngine {
    config: PresenceConfig,
    rules: Rules,
    locations: Vec<String>,
}

impl PresenceEngine {
    /// Compile a configuration; it is validated again here so no unchecked config gets in.
    pub fn new(config: PresenceConfig) -> Result<Self, Vec<ConfigError>> {
        config.validate()?;
        let rules = Rules::new(&config)?;
        let mut locations: Vec<String> = config
            .ranges
            .iter()
            .filter_map(|r| r.location.clone())
            .collect();
        locations.sort();
        locations.dedup();
        Ok(Self {
            config,
            rules,
            locations,
        })
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    pub fn ranges(&self) -> &IpRangeTable {
        &self.rules.table
    }

    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Known office locations, sorted.
    pub fn locations(&self) -> &[String] {
        &self.locations
    }

    /// The configured mode of a user (by UPN, any case).
    pub fn user_mode(&self, upn: &str) -> Option<PresenceMode> {
        self.rules
            .lookup_user(upn)
            .map(|ix| self.rules.users[ix as usize].mode)
    }

    /// The calendar day of an instant at a place: the location's zone, else the default.
    pub fn date_at(&self, place: Option<&Place>, at: Timestamp) -> Date {
        let zone = match place {
            Some(Place::Office { location }) => {
                match self.config.settings.location_time_zones.get(location) {
                    Some(tz) => Zone::new(TimeZone::get(tz).expect("validated")),
                    None => self.rules.default_zone.clone(),
                }
            }
            _ => self.rules.default_zone.clone(),
        };
        zone.date(at.as_millisecond())
    }

    /// One sign-in, classified and applied.
    #[inline]
    pub(crate) fn take<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        s: &SignIn<'_>,
        days: (Date, Date),
        counts: &mut Counts,
        sink: &mut dyn EventSink,
    ) -> Result<(), PresenceError> {
        counts.received += 1;
        match self.rules.classify(s, days) {
            Verdict::Discard(f) => f(&mut counts.discarded),
            Verdict::Candidate(c) => {
                let id = s.id.as_deref().unwrap_or_default();
                self.apply(b, id, &c, counts, sink)?;
            }
        }
        Ok(())
    }

    /// Steps 2 (discovery) to 4 for one candidate.
    fn apply<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        id: &str,
        c: &Candidate,
        counts: &mut Counts,
        sink: &mut dyn EventSink,
    ) -> Result<(), PresenceError> {
        let u = &self.rules.users[c.user as usize];
        let user = UserRef {
            ix: c.user,
            key: &u.key,
        };
        if !b.first_seen(user, id, c.id_hash, c.date)? {
            counts.discarded.duplicate += 1;
            return Ok(());
        }
        if c.range == NO_RANGE {
            b.discover(suggested_block(c.ip), c.ip, user, c.date)?;
            counts.discovered += 1;
            return Ok(());
        }
        counts.matched += 1;
        if self.rules.logs_access(c.range) {
            if b.log_access(user, c.ip, c.date)? {
                counts.access_logged += 1;
                sink.access(&AccessEvent {
                    user: u.key.clone(),
                    ip: c.ip,
                    date: c.date,
                });
            } else {
                counts.access_already_logged += 1;
            }
        } else {
            counts.access_not_logged += 1;
        }
        match &self.rules.places[c.range as usize] {
            None => counts.presence_not_enabled += 1,
            Some(_) if u.mode == PresenceMode::Off => counts.presence_mode_off += 1,
            Some(place) => {
                counts.presence_observed += 1;
                b.observe(
                    user,
                    c.date,
                    c.at_ms,
                    RangeRef {
                        ix: c.range,
                        name: &self.rules.table.range(c.range).name,
                        place,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// End a batch whose sign-ins are applied: recompute the days touched (their events
    /// and statuses into `report`), prune, and sort the report.
    pub(crate) fn finish<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        opts: &ProcessOptions,
        mut report: BatchReport,
    ) -> Result<BatchReport, PresenceError> {
        self.finish_to(b, opts, &mut report)?;
        report.sort();
        Ok(report)
    }

    /// End a batch: recompute the days touched, each day's events and status handed to
    /// `sink` as it is recomputed, then prune.
    pub(crate) fn finish_to<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<(), PresenceError> {
        let mut failed = None;
        b.recompute(&mut |ch: DayChange| {
            if let Err(e) = emit_change(ch, sink) {
                failed.get_or_insert(e);
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        b.prune(
            opts.today(),
            self.config.settings.retention_days,
            opts.late_window_days,
        )
    }

    /// Process a batch of sign-ins. The backend's state afterwards is the same whatever
    /// the order and batching of the sign-ins (see the crate doc).
    pub fn process<'a, B, I>(
        &self,
        b: &mut B,
        sign_ins: I,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError>
    where
        B: PresenceBackend + ?Sized,
        I: IntoIterator<Item = SignIn<'a>>,
    {
        let mut report = BatchReport::default();
        report.counts = self.process_to(b, sign_ins, opts, &mut report)?;
        report.sort();
        Ok(report)
    }

    /// [`Self::process`] with every event handed to `sink` as it is found, in no
    /// particular order: the counts.
    pub fn process_to<'a, B, I>(
        &self,
        b: &mut B,
        sign_ins: I,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<Counts, PresenceError>
    where
        B: PresenceBackend + ?Sized,
        I: IntoIterator<Item = SignIn<'a>>,
    {
        b.begin()?;
        let r = self.process_in(b, sign_ins, opts, sink);
        b.end(r.is_ok())?;
        r
    }

    fn process_in<'a, B, I>(
        &self,
        b: &mut B,
        sign_ins: I,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<Counts, PresenceError>
    where
        B: PresenceBackend + ?Sized,
        I: IntoIterator<Item = SignIn<'a>>,
    {
        let days = opts.accepted();
        let mut counts = Counts::default();
        if b.in_bulk() {
            let mut chunk = Vec::with_capacity(BULK);
            for s in sign_ins {
                counts.received += 1;
                match self.rules.classify(&s, days) {
                    Verdict::Discard(f) => f(&mut counts.discarded),
                    Verdict::Candidate(c) => {
                        chunk.push((c, s.id.as_deref().unwrap_or_default().to_owned()));
                        if chunk.len() >= BULK {
                            self.apply_bulk(b, &mut chunk, &mut counts, sink)?;
                        }
                    }
                }
            }
            self.apply_bulk(b, &mut chunk, &mut counts, sink)?;
        } else {
            for s in sign_ins {
                self.take(b, &s, days, &mut counts, sink)?;
            }
        }
        self.finish_to(b, opts, sink)?;
        Ok(counts)
    }

    /// Steps 2 to 4 for candidates in bulk (a backend that prefers it): each backend
    /// call for all of them at once, in the order [`Self::apply`] makes them for one.
    /// Every answer depends only on what came before in that order (an id, an access
    /// key, an observation already recorded; discovery counts add up), so the counts,
    /// events and state are those of applying them one by one.
    fn apply_bulk<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        chunk: &mut Vec<(Candidate, String)>,
        counts: &mut Counts,
        sink: &mut dyn EventSink,
    ) -> Result<(), PresenceError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let user = |c: &Candidate| UserRef {
            ix: c.user,
            key: &self.rules.users[c.user as usize].key,
        };
        let seen: Vec<SeenSignIn<'_>> = chunk
            .iter()
            .map(|(c, id)| SeenSignIn {
                user: user(c),
                id,
                hash: c.id_hash,
                date: c.date,
            })
            .collect();
        let new = answers(b.first_seen_all(&seen)?, seen.len())?;
        let (mut access, mut observed, mut discovered) = (Vec::new(), Vec::new(), Vec::new());
        for ((c, _), new) in chunk.iter().zip(new) {
            if !new {
                counts.discarded.duplicate += 1;
                continue;
            }
            let u = user(c);
            if c.range == NO_RANGE {
                discovered.push((suggested_block(c.ip), c.ip, u, c.date));
                counts.discovered += 1;
                continue;
            }
            counts.matched += 1;
            if self.rules.logs_access(c.range) {
                access.push((u, c.ip, c.date));
            } else {
                counts.access_not_logged += 1;
            }
            match &self.rules.places[c.range as usize] {
                None => counts.presence_not_enabled += 1,
                Some(_) if self.rules.users[c.user as usize].mode == PresenceMode::Off => {
                    counts.presence_mode_off += 1
                }
                Some(place) => {
                    counts.presence_observed += 1;
                    observed.push(Observation {
                        user: u,
                        date: c.date,
                        at_ms: c.at_ms,
                        range: RangeRef {
                            ix: c.range,
                            name: &self.rules.table.range(c.range).name,
                            place,
                        },
                    });
                }
            }
        }
        let logged = answers(b.log_access_all(&access)?, access.len())?;
        for (&(u, ip, date), new) in access.iter().zip(logged) {
            if new {
                counts.access_logged += 1;
                sink.access(&AccessEvent {
                    user: u.key.to_owned(),
                    ip,
                    date,
                });
            } else {
                counts.access_already_logged += 1;
            }
        }
        b.observe_all(&observed)?;
        b.discover_all(&discovered)?;
        drop(seen);
        chunk.clear();
        Ok(())
    }

    /// Apply a manual set (`place: Some`) or clear (`None`) for a user, effective from
    /// `at` until the user's next change that day. `date` defaults to the day of `at`
    /// at the place (the default zone for remote and clear).
    pub fn set_manual<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        upn: &str,
        place: Option<Place>,
        at: Timestamp,
        date: Option<Date>,
        set_by: &str,
    ) -> Result<BatchReport, PresenceError> {
        let ix = self
            .rules
            .lookup_user(upn)
            .ok_or_else(|| PresenceError::Invalid(format!("unknown user {upn:?}")))?;
        let u = &self.rules.users[ix as usize];
        if u.mode == PresenceMode::Off {
            return Err(PresenceError::Invalid(format!(
                "presence is off for {upn:?}"
            )));
        }
        if let Some(Place::Office { location }) = &place
            && self.locations.binary_search(location).is_err()
        {
            return Err(PresenceError::Invalid(format!(
                "unknown location {location:?}"
            )));
        }
        let date = date.unwrap_or_else(|| self.date_at(place.as_ref(), at));
        b.begin()?;
        let r = b
            .add_override(
                &u.key,
                date,
                Override {
                    at_ms: at.as_millisecond(),
                    place,
                    set_by: set_by.to_owned(),
                },
            )
            .and_then(|()| self.finish(b, &ProcessOptions::at(at), BatchReport::default()));
        b.end(r.is_ok())?;
        r
    }
}

/// Candidates handed to a backend in bulk at once: a few MB of ids and calls.
const BULK: usize = 5_000;

/// A backend's answers to `n` items, one each (a short list would be misread).
fn answers(got: Vec<bool>, n: usize) -> Result<Vec<bool>, PresenceError> {
    if got.len() == n {
        Ok(got)
    } else {
        Err(PresenceError::Backend(format!(
            "the presence store answered {} of {n} items",
            got.len()
        )))
    }
}

/// A recomputed day's events and status, handed to `sink`.
pub(crate) fn emit_change(ch: DayChange, sink: &mut dyn EventSink) -> Result<(), PresenceError> {
    for t in ch.emitted {
        sink.presence(&t.into_event(&ch.user, ch.date)?, false);
    }
    for t in ch.superseded {
        sink.presence(&t.into_event(&ch.user, ch.date)?, true);
    }
    sink.status(&UserDayStatus {
        since: ch
            .status
            .as_ref()
            .map(|t| timestamp_of(t.at_ms))
            .transpose()?,
        place: ch.status.and_then(|t| t.place),
        user: ch.user,
        date: ch.date,
    });
    Ok(())
}
