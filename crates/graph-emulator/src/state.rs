//! The state every layer and route shares: the tenant with its indexes
//! ([`Directory`]), the virtual clock, fault and throttle settings, issued refresh
//! tokens, the request log and the signing keys ([`Shared`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::faults::{FaultPlan, ThrottleConfig, ThrottleState};
use crate::log::RequestLog;
use crate::odata::PageTokens;
use crate::sessions::UserSessions;
use crate::tenant::{AppRegistration, SignIn, Tenant, User};

/// The emulator's "now": real time unless a test froze or shifted it.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    state: Mutex<(Option<Timestamp>, SignedDuration)>,
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        let (frozen, offset) = *self.state.lock().expect("clock lock");
        let base = frozen.unwrap_or_else(Timestamp::now);
        base.checked_add(offset).unwrap_or(base)
    }
    pub fn set(&self, at: Timestamp) {
        *self.state.lock().expect("clock lock") = (Some(at), SignedDuration::ZERO);
    }
    pub fn advance(&self, by: Duration) {
        let mut s = self.state.lock().expect("clock lock");
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        s.1 = s.1.saturating_add(by);
    }
    /// Run at real speed from `at` (now is `at` at this instant).
    pub fn start_at(&self, at: Timestamp) {
        let offset = at.duration_since(Timestamp::now());
        *self.state.lock().expect("clock lock") = (None, offset);
    }

    pub fn real(&self) {
        *self.state.lock().expect("clock lock") = (None, SignedDuration::ZERO);
    }
}

/// Which collection a membership points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Group,
    Role,
    Unit,
}

/// The tenant with the indexes the routes need.
pub(crate) struct Directory {
    pub tenant: Tenant,
    pub by_id: HashMap<Uuid, usize>,
    pub by_upn: HashMap<String, usize>,
    pub member_of: HashMap<Uuid, Vec<(Kind, usize)>>,
    /// Sorted by (createdDateTime, id).
    pub sign_ins: Vec<SignIn>,
}

impl Directory {
    pub fn new(mut tenant: Tenant) -> Directory {
        let mut sign_ins = std::mem::take(&mut tenant.sign_ins);
        sign_ins.sort_unstable_by_key(|a| (a.created_date_time, a.id));
        let mut d = Directory {
            tenant,
            by_id: HashMap::new(),
            by_upn: HashMap::new(),
            member_of: HashMap::new(),
            sign_ins,
        };
        d.reindex();
        d
    }

    pub fn reindex(&mut self) {
        let t = &self.tenant;
        self.by_id = t.users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        self.by_upn = t
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.user_principal_name.to_lowercase(), i))
            .collect();
        let mut m: HashMap<Uuid, Vec<(Kind, usize)>> = HashMap::new();
        for (kind, list) in [
            (Kind::Group, &t.groups),
            (Kind::Role, &t.directory_roles),
            (Kind::Unit, &t.administrative_units),
        ] {
            for (i, o) in list.iter().enumerate() {
                for member in &o.members {
                    m.entry(*member).or_default().push((kind, i));
                }
            }
        }
        self.member_of = m;
    }

    /// A user by object id or (case-insensitive) UPN.
    pub fn user_index(&self, key: &str) -> Option<usize> {
        match Uuid::try_parse(key) {
            Ok(id) => self.by_id.get(&id).copied(),
            Err(_) => self.by_upn.get(&key.to_lowercase()).copied(),
        }
    }

    /// An app registration by client id.
    pub fn app(&self, client_id: Uuid) -> Option<&AppRegistration> {
        self.tenant.apps.iter().find(|a| a.client_id == client_id)
    }

    pub fn user(&self, key: &str) -> Option<&User> {
        self.user_index(key).map(|i| &self.tenant.users[i])
    }

    /// Remove a user (and so every answer about them becomes 404).
    pub fn delete_user(&mut self, id: Uuid) -> bool {
        let before = self.tenant.users.len();
        self.tenant.users.retain(|u| u.id != id);
        let gone = self.tenant.users.len() != before;
        if gone {
            self.reindex();
        }
        gone
    }

    pub fn add_sign_ins(&mut self, more: Vec<SignIn>) {
        self.sign_ins.extend(more);
        self.sign_ins.sort_by_key(|a| (a.created_date_time, a.id));
    }
}

/// A refresh token the emulator issued.
#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub client_id: Uuid,
    pub upn: String,
    pub scope: String,
    pub issued: Timestamp,
    /// Issue order, from 1: the request log names a redeemed token by it.
    pub serial: u64,
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub token_lifetime: Duration,
    pub refresh_token_reuse: bool,
    pub refresh_token_max_inactive: Duration,
    pub skiptoken_ttl: Duration,
    pub sign_in_retention: bool,
}

/// Everything the routes share.
pub(crate) struct Shared {
    pub dir: RwLock<Directory>,
    pub clock: Clock,
    pub faults: Mutex<(FaultPlan, fastrand::Rng)>,
    pub throttle: Mutex<(ThrottleConfig, ThrottleState)>,
    /// Refresh tokens issued, and whether each was already redeemed.
    pub refresh: Mutex<HashMap<String, (RefreshGrant, bool)>>,
    pub token_requests: AtomicU64,
    pub log: RequestLog,
    pub token_key: aws_lc_rs::hmac::Key,
    pub pages: PageTokens,
    pub base_url: String,
    pub settings: Settings,
    /// `$batch` requests so far (for scheduled deletions).
    pub batches: AtomicU64,
    /// Users to delete as the n-th `$batch` arrives: (n, object id).
    pub scheduled_deletions: Mutex<Vec<(u64, Uuid)>>,
    /// Presence sessions per user (`setPresence` and friends); taken after `dir`.
    pub sessions: Mutex<HashMap<Uuid, UserSessions>>,
}

impl Shared {
    /// Delete the users scheduled for the `n`-th batch (a test's "deleted between
    /// resolution and read").
    pub fn apply_scheduled_deletions(&self, n: u64) {
        let due: Vec<Uuid> = {
            let mut s = self.scheduled_deletions.lock().expect("deletions lock");
            let due = s
                .iter()
                .filter(|(at, _)| *at == n)
                .map(|(_, id)| *id)
                .collect();
            s.retain(|(at, _)| *at != n);
            due
        };
        if !due.is_empty() {
            let mut dir = self.dir.write().expect("dir lock");
            for id in due {
                dir.delete_user(id);
            }
        }
    }

    /// Issue a refresh token for `upn` and `client_id`, not yet redeemed.
    pub fn issue_refresh_token(
        &self,
        client_id: Uuid,
        upn: &str,
        scope: &str,
        now: Timestamp,
    ) -> String {
        let token = format!(
            "1.EMU{}{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let mut table = self.refresh.lock().expect("refresh lock");
        let serial = table.len() as u64 + 1;
        table.insert(
            token.clone(),
            (
                RefreshGrant {
                    client_id,
                    upn: upn.to_string(),
                    scope: scope.to_string(),
                    issued: now,
                    serial,
                },
                false,
            ),
        );
        token
    }
}
