//! A user's security status in one call, for one user or up to [`MAX_USERS`]:
//! the use case behind `get_user_status`.
//!
//! Two rounds of JSON batches (the Graph layer's [`GraphClient::batch`], 20
//! requests a `POST /$batch`, each paced, retried and answered on its own), plus
//! presence in `getPresencesByUserId` calls of 650 ids:
//!
//! 1. **account** for every input (object id or UPN):
//!    `GET /users/{id|upn}?$select=` [`ACCOUNT_SELECT`] (User.Read.All). This also
//!    resolves UPNs to object ids.
//! 2. for every resolved user, at once: **sign-in activity**
//!    (`GET /users/{id}?$select=signInActivity`: AuditLog.Read.All and an Entra ID
//!    P1/P2 tenant, <https://learn.microsoft.com/en-us/graph/api/resources/signinactivity>
//!    and the user-list page), **risk** (`GET /identityProtection/riskyUsers/{id}`:
//!    IdentityRiskyUser.Read.All and P2, <https://learn.microsoft.com/en-us/graph/api/riskyuser-get>),
//!    **privileged memberships** (`GET /users/{id}/memberOf?$select=id,displayName,roleTemplateId&$top=999`:
//!    Directory.Read.All; GroupMember.Read.All shows groups only), and **presence**
//!    (`POST /communications/getPresencesByUserId`, Presence.Read.All, at most 650 ids).
//! 3. **office presence** today from the IP presence store, when a state dir holds a
//!    configuration that `sync_ip_presence` kept (no Graph call).
//!
//! A part that cannot be read goes to the user's `unavailable` list with a reason
//! and what would enable it; the rest is still returned. A 403 on riskyUsers is the
//! same bare 403 for a missing permission and a tenant without P2 (reported in
//! microsoft/zerotrustassessment#1022), so the token's own `roles` tell the two
//! apart. A user whose account was read but who is gone by round 2 (a 404 from
//! `/users/{id}/...`) is reported `found: false` with every part `not_found`.
//! riskyUsers has no record for a user never at risk: a 404 there on a user who
//! still exists means "no risk" (Graph lists only users with a risk history; the
//! riskyUser page describes the collection as users "who are at risk").

use std::collections::HashMap;
use std::path::Path;

use jiff::Timestamp;
use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::claims;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{ApiFamily, BatchItem, GraphClient, GraphPath, GraphRequest, GraphResponse};
use crate::office::{ConfigInput, Office, Today};

/// Most users one call takes.
pub const MAX_USERS: usize = 1000;
/// Graph refuses more ids in one `getPresencesByUserId` (a bare 400).
const PRESENCE_CHUNK: usize = 650;

/// The account properties read (all v1.0 user properties, `schemas/v1.0-Prod.csdl`).
pub const ACCOUNT_SELECT: &str = "id,userPrincipalName,displayName,accountEnabled,userType,createdDateTime,lastPasswordChangeDateTime,signInSessionsValidFromDateTime,onPremisesSyncEnabled,onPremisesLastSyncDateTime";

/// The parts of a status, as inputs and `unavailable` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Account,
    SignInActivity,
    Presence,
    OfficePresence,
    Risk,
    Privileged,
}

impl Part {
    pub const ALL: [Part; 6] = [
        Part::Account,
        Part::SignInActivity,
        Part::Presence,
        Part::OfficePresence,
        Part::Risk,
        Part::Privileged,
    ];
}

/// Why a part is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The app lacks the permission named in `needs`.
    PermissionMissing,
    /// The tenant lacks the licence named in `needs`.
    LicenceMissing,
    /// The user does not exist (or was deleted while we read).
    NotFound,
    /// Office presence: no IP presence configuration in the state dir, or the user is not shown by it.
    NotConfigured,
    /// Graph answered with another error (throttling beyond the retry budget, a 5xx); see `message`.
    Error,
}

/// One part that could not be read.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Unavailable {
    pub part: Part,
    pub reason: Reason,
    /// The permission or licence that would enable it, when that is the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
    pub message: String,
    /// Graph's status and error code, when Graph refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// What a playbook branches on. `null` when the part it comes from is unavailable.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Summary {
    /// The user exists.
    pub found: bool,
    /// `accountEnabled`.
    pub enabled: Option<bool>,
    /// Days since the last successful sign-in (interactive or not), else the last interactive one.
    pub days_since_last_sign_in: Option<i64>,
    /// Signed in within `recent_days`.
    pub signed_in_recently: Option<bool>,
    /// Risk level low, medium or high while at risk or confirmed compromised.
    pub risky: Option<bool>,
    /// Holds at least one directory role.
    pub admin: Option<bool>,
    /// Teams shows the user out of office.
    pub out_of_office: Option<bool>,
    /// IP presence places the user in an office today.
    pub in_office: Option<bool>,
}

/// One user's status.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UserStatus {
    /// The input as given.
    pub input: String,
    /// Object id, when known.
    pub id: Option<String>,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
    /// Graph's account properties (`accountEnabled`, `userType`, `createdDateTime`,
    /// `lastPasswordChangeDateTime`, `signInSessionsValidFromDateTime`,
    /// `onPremisesSyncEnabled`, `onPremisesLastSyncDateTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Map<String, Value>>,
    /// Graph's `signInActivity` (last interactive, non-interactive and successful sign-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_activity: Option<Map<String, Value>>,
    /// `availability`, `activity`, `outOfOfficeSettings` as Graph gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Map<String, Value>>,
    /// Today's IP presence: `date`, `location` (an office) or `remote`, `since`;
    /// `status: null` when the user has no status today.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub office_presence: Option<Value>,
    /// `riskLevel`, `riskState`, `riskDetail`, `riskLastUpdatedDateTime`; level and state
    /// `none` when Identity Protection has no record of the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Map<String, Value>>,
    /// Directory roles held (`id`, `displayName`, `roleTemplateId`) and the number of groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<Privileged>,
    /// The parts that could not be read, and why.
    pub unavailable: Vec<Unavailable>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Privileged {
    pub directory_roles: Vec<Value>,
    pub group_count: u64,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct StatusQuery<'a> {
    pub ids: &'a [String],
    pub parts: Vec<Part>,
    /// "Signed in recently" means within this many days.
    pub recent_days: i64,
    pub state_dir: Option<&'a Path>,
    /// The shared state (`--state-url`), whose presence store is read instead of the
    /// state dir's.
    pub shared: Option<crate::state::SharedState>,
}

/// One user being worked on.
struct Work {
    status: UserStatus,
    /// Gone between round 1 and round 2.
    deleted: bool,
}

/// Read the status of every input (see the module doc); input order, duplicates once.
pub async fn user_status(graph: &GraphClient, q: &StatusQuery<'_>) -> Result<Vec<UserStatus>> {
    let mut seen = std::collections::HashSet::new();
    let inputs: Vec<&String> = q
        .ids
        .iter()
        .filter(|i| seen.insert(i.to_lowercase()))
        .collect();
    if inputs.len() > MAX_USERS {
        return Err(Error::invalid(
            "/inputs/ids",
            format!("at most {MAX_USERS} users in one call"),
        ));
    }
    let wants = |p: Part| q.parts.contains(&p);
    let granted = granted_permissions(graph).await;

    // Round 1: the account, which also resolves UPNs.
    let accounts = graph
        .batch(
            inputs
                .iter()
                .map(|i| {
                    BatchItem::new(
                        GraphRequest::get(GraphPath::user(i), ApiFamily::Directory)
                            .query("$select", ACCOUNT_SELECT),
                    )
                })
                .collect(),
        )
        .await?;
    let mut work: Vec<Work> = Vec::with_capacity(inputs.len());
    for (input, answer) in inputs.iter().zip(accounts) {
        let mut status = UserStatus {
            input: (*input).clone(),
            id: crate::fastpath::guid::parse(input).map(|_| input.to_lowercase()),
            user_principal_name: None,
            display_name: None,
            account: None,
            sign_in_activity: None,
            presence: None,
            office_presence: None,
            risk: None,
            privileged: None,
            unavailable: Vec::new(),
            summary: Summary {
                found: true,
                ..Summary::default()
            },
        };
        match answer.and_then(|r| object(&r)) {
            Ok(mut user) => {
                status.id = user.remove("id").and_then(text);
                status.user_principal_name = user.remove("userPrincipalName").and_then(text);
                status.display_name = user.remove("displayName").and_then(text);
                user.remove("@odata.context");
                if wants(Part::Account) {
                    status.account = Some(user);
                }
            }
            Err(e) if is_not_found(&e) => {
                status.summary.found = false;
                status.id = None;
            }
            Err(e) => {
                // Without the account a UPN has no object id: nothing else can be read.
                let part = Part::Account;
                status.unavailable.push(unavailable(
                    part,
                    &e,
                    &granted,
                    Needs::permission(&[&["User.Read.All"]]),
                ));
            }
        }
        if status.id.is_none() && status.summary.found {
            // A UPN whose account could not be read has no object id: the other Graph
            // parts cannot be asked for, for the same reason.
            let why = status.unavailable[0].clone();
            for part in [
                Part::SignInActivity,
                Part::Presence,
                Part::Risk,
                Part::Privileged,
            ] {
                if wants(part) {
                    status.unavailable.push(Unavailable {
                        part,
                        message: format!("the user could not be resolved: {}", why.message),
                        ..why.clone()
                    });
                }
            }
        }
        work.push(Work {
            status,
            deleted: false,
        });
    }

    // Round 2: every other Graph part of every resolved user, and presence.
    let mut items: Vec<BatchItem> = Vec::new();
    let mut slots: Vec<(usize, Part)> = Vec::new();
    for (n, w) in work.iter().enumerate() {
        let Some(id) = w.status.id.as_deref() else {
            continue;
        };
        if wants(Part::SignInActivity) {
            items.push(BatchItem::new(
                GraphRequest::get(GraphPath::user(id), ApiFamily::Directory)
                    .query("$select", "signInActivity"),
            ));
            slots.push((n, Part::SignInActivity));
        }
        if wants(Part::Risk) {
            items.push(BatchItem::new(GraphRequest::get(
                GraphPath::new("identityProtection/riskyUsers").value(id),
                ApiFamily::Directory,
            )));
            slots.push((n, Part::Risk));
        }
        if wants(Part::Privileged) {
            items.push(BatchItem::new(
                GraphRequest::get(GraphPath::user(id).then("memberOf"), ApiFamily::Directory)
                    .query("$select", "id,displayName,roleTemplateId")
                    .query("$top", "999"),
            ));
            slots.push((n, Part::Privileged));
        }
    }
    let ids: Vec<(usize, String)> = work
        .iter()
        .enumerate()
        .filter_map(|(n, w)| w.status.id.clone().map(|id| (n, id)))
        .collect();
    let (answers, presences) = tokio::join!(graph.batch(items), async {
        if wants(Part::Presence) {
            Some(presences(graph, &ids).await)
        } else {
            None
        }
    });
    let answers = answers?;
    for ((n, part), answer) in slots.into_iter().zip(answers) {
        let w = &mut work[n];
        match (part, answer) {
            (Part::SignInActivity, Ok(r)) => {
                let mut v = object(&r)?;
                let activity = v
                    .remove("signInActivity")
                    .and_then(|a| match a {
                        Value::Object(m) => Some(m),
                        _ => None,
                    })
                    .unwrap_or_default();
                w.status.sign_in_activity = Some(activity);
            }
            (Part::Risk, Ok(r)) => {
                let v = object(&r)?;
                let keep = [
                    "riskLevel",
                    "riskState",
                    "riskDetail",
                    "riskLastUpdatedDateTime",
                ];
                w.status.risk = Some(
                    v.into_iter()
                        .filter(|(k, _)| keep.contains(&k.as_str()))
                        .collect(),
                );
            }
            (Part::Privileged, Ok(r)) => {
                if roles_hidden(&granted) {
                    w.status.unavailable.push(Unavailable {
                        part: Part::Privileged,
                        reason: Reason::PermissionMissing,
                        needs: Some("Directory.Read.All".into()),
                        message: "the app holds GroupMember.Read.All but not Directory.Read.All: memberOf then lists groups only, so directory roles cannot be told".into(),
                        status_code: None,
                        code: None,
                    });
                } else {
                    w.status.privileged = Some(privileged(graph, &r).await?);
                }
            }
            (Part::Risk, Err(e)) if is_not_found(&e) => {
                // No record: never at risk (or gone; settled below).
                let mut m = Map::new();
                m.insert("riskLevel".into(), json!("none"));
                m.insert("riskState".into(), json!("none"));
                w.status.risk = Some(m);
            }
            (_, Err(e)) if is_not_found(&e) => w.deleted = true,
            (part, Err(e)) => {
                let needs = match part {
                    // signInActivity: AuditLog.Read.All and a user read permission
                    // (the user-list page's signInActivity example).
                    Part::SignInActivity => Needs {
                        permissions: &[
                            &["AuditLog.Read.All"],
                            &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All"],
                        ],
                        licence: Some("Microsoft Entra ID P1 or P2"),
                        licence_by_elimination: false,
                    },
                    Part::Risk => Needs {
                        permissions: &[&[
                            "IdentityRiskyUser.Read.All",
                            "IdentityRiskyUser.ReadWrite.All",
                        ]],
                        licence: Some("Microsoft Entra ID P2"),
                        licence_by_elimination: true,
                    },
                    _ => Needs::permission(&[&["Directory.Read.All"]]),
                };
                w.status
                    .unavailable
                    .push(unavailable(part, &e, &granted, needs));
            }
            (_, Ok(_)) => {}
        }
    }
    match presences {
        None => {}
        Some(Err(e)) => {
            for w in work.iter_mut().filter(|w| w.status.id.is_some()) {
                w.status.unavailable.push(unavailable(
                    Part::Presence,
                    &e,
                    &granted,
                    Needs::permission(&[&["Presence.Read.All"]]),
                ));
            }
        }
        Some(Ok(mut found)) => {
            for w in work.iter_mut() {
                let Some(id) = w.status.id.as_deref() else {
                    continue;
                };
                match found.remove(&id.to_lowercase()) {
                    Some(p) => w.status.presence = Some(p),
                    None => w.status.unavailable.push(Unavailable {
                        part: Part::Presence,
                        reason: Reason::NotFound,
                        needs: None,
                        message: "Graph returned no presence for this user".into(),
                        status_code: None,
                        code: None,
                    }),
                }
            }
        }
    }

    if wants(Part::OfficePresence) {
        office_presence(&mut work, q.state_dir, q.shared.clone()).await;
    }
    let now = Timestamp::now();
    Ok(work
        .into_iter()
        .map(|w| finish(w, &q.parts, q.recent_days, now))
        .collect())
}

/// The permissions the token carries (empty when it is not readable).
async fn granted_permissions(graph: &GraphClient) -> Vec<String> {
    match graph.tokens().token().await {
        Ok(t) => claims::granted(t.expose_secret(), false)
            .map(|g| g.permissions)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Whether memberOf hides directory roles from this token: GroupMember.Read.All
/// alone lists groups only (the memberOf page's permission notes; the emulator does
/// the same). An unreadable token is given the benefit of the doubt.
fn roles_hidden(granted: &[String]) -> bool {
    let has = |p: &str| granted.iter().any(|g| g.eq_ignore_ascii_case(p));
    !granted.is_empty()
        && has("GroupMember.Read.All")
        && ![
            "Directory.Read.All",
            "Directory.ReadWrite.All",
            "GroupMember.ReadWrite.All",
        ]
        .iter()
        .any(|p| has(p))
}

/// What would enable a part.
struct Needs {
    /// Every group is needed; any permission of a group will do (least privilege first).
    permissions: &'static [&'static [&'static str]],
    licence: Option<&'static str>,
    /// Graph refuses a missing licence with the same 403 as a missing permission
    /// (riskyUsers), so a token holding the permissions means the licence is missing.
    licence_by_elimination: bool,
}

impl Needs {
    fn permission(permissions: &'static [&'static [&'static str]]) -> Needs {
        Needs {
            permissions,
            licence: None,
            licence_by_elimination: false,
        }
    }
}

/// A refused part: permission or licence, told apart by Graph's code or the token's roles.
fn unavailable(part: Part, e: &Error, granted: &[String], needs: Needs) -> Unavailable {
    let mut u = Unavailable {
        part,
        reason: Reason::Error,
        needs: None,
        message: e.message.clone(),
        status_code: e.status_code,
        code: e.code.clone(),
    };
    if e.kind != ErrorKind::Graph || e.status_code != Some(403) {
        return u;
    }
    let held = |group: &[&str]| {
        group
            .iter()
            .any(|p| granted.iter().any(|g| g.eq_ignore_ascii_case(p)))
    };
    let lacking: Vec<String> = needs
        .permissions
        .iter()
        .filter(|g| !held(g))
        .map(|g| g.join(" or "))
        .collect();
    // Sign-in activity's refusal for the licence has a code of its own (graph-facts.md);
    // riskyUsers answers a bare 403 either way, so the token decides.
    let licence_code =
        e.code.as_deref() == Some("Authentication_RequestFromNonPremiumTenantOrB2CTenant");
    let by_elimination = needs.licence_by_elimination && !granted.is_empty() && lacking.is_empty();
    if let Some(licence) = needs.licence
        && (licence_code || by_elimination)
    {
        u.reason = Reason::LicenceMissing;
        u.needs = Some(licence.to_string());
    } else {
        u.reason = Reason::PermissionMissing;
        // What the token lacks; every requirement when the token is not readable.
        let all: Vec<String> = needs.permissions.iter().map(|g| g.join(" or ")).collect();
        u.needs = Some(if lacking.is_empty() { all } else { lacking }.join(" and "));
    }
    u
}

fn is_not_found(e: &Error) -> bool {
    e.kind == ErrorKind::Graph && e.status_code == Some(404)
}

fn object(r: &GraphResponse) -> Result<Map<String, Value>> {
    r.json::<Map<String, Value>>()
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Roles held and groups counted, following `nextLink` past 999 memberships.
async fn privileged(graph: &GraphClient, first: &GraphResponse) -> Result<Privileged> {
    let page = object(first)?;
    let mut items: Vec<Value> = match page.get("value") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if let Some(link) = page.get("@odata.nextLink").and_then(Value::as_str) {
        let rest = graph
            .pages_from_link(link, ApiFamily::Directory)?
            .collect(usize::MAX)
            .await?;
        items.extend(rest.items);
    }
    let kind = |v: &Value| {
        v.get("@odata.type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut roles = Vec::new();
    let mut groups = 0;
    for v in items {
        match kind(&v).as_str() {
            "#microsoft.graph.directoryRole" => {
                let mut m = Map::new();
                for k in ["id", "displayName", "roleTemplateId"] {
                    m.insert(k.into(), v.get(k).cloned().unwrap_or(Value::Null));
                }
                roles.push(Value::Object(m));
            }
            "#microsoft.graph.group" => groups += 1,
            _ => {}
        }
    }
    Ok(Privileged {
        directory_roles: roles,
        group_count: groups,
    })
}

/// Presence by object id (lower-cased), 650 ids a call, the calls concurrent.
async fn presences(
    graph: &GraphClient,
    ids: &[(usize, String)],
) -> Result<HashMap<String, Map<String, Value>>> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let chunks: Vec<Vec<&str>> = ids
        .chunks(PRESENCE_CHUNK)
        .map(|c| c.iter().map(|(_, id)| id.as_str()).collect())
        .collect();
    let answers: Vec<GraphResponse> = stream::iter(chunks)
        .map(|c| {
            graph.send(
                GraphRequest::post(
                    GraphPath::new("communications/getPresencesByUserId"),
                    ApiFamily::Presence,
                )
                .json(json!({ "ids": c })),
            )
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    let mut out = HashMap::with_capacity(ids.len());
    for r in answers {
        let page = object(&r)?;
        if let Some(Value::Array(values)) = page.get("value") {
            for v in values {
                let Some(id) = v.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let mut m = Map::new();
                for k in ["availability", "activity", "outOfOfficeSettings"] {
                    if let Some(x) = v.get(k) {
                        m.insert(k.into(), x.clone());
                    }
                }
                out.insert(id.to_lowercase(), m);
            }
        }
    }
    Ok(out)
}

/// Today's IP presence from the store, when the state dir (or the shared state) holds a
/// kept configuration.
async fn office_presence(
    work: &mut [Work],
    state_dir: Option<&Path>,
    shared: Option<crate::state::SharedState>,
) {
    let not_configured = |m: &str| Unavailable {
        part: Part::OfficePresence,
        reason: Reason::NotConfigured,
        needs: Some(
            "IP presence: sync_ip_presence run with a configuration under --state-dir".into(),
        ),
        message: m.to_string(),
        status_code: None,
        code: None,
    };
    // Never create a store where there is none: look before opening.
    let configured = state_dir.filter(|d| d.join("state.sqlite3").is_file());
    let office = match (shared, configured) {
        (Some(shared), _) => Some(Ok(Office::shared(shared))),
        (None, Some(d)) => Some(Office::open(Some(d), "get_user_status")),
        (None, None) => None,
    };
    let loaded = match office {
        Some(office) => Some(
            async {
                let office = office?;
                let config = office.config(&ConfigInput::default()).await?;
                let upns: Vec<&str> = work
                    .iter()
                    .filter_map(|w| w.status.user_principal_name.as_deref())
                    .collect();
                office.today(config, &upns)
            }
            .await,
        ),
        None => None,
    };
    let today = match loaded {
        Some(Ok(t)) => t,
        other => {
            let why = match other {
                Some(Err(e)) => {
                    format!("no IP presence configuration could be read: {}", e.message)
                }
                _ => "IP presence is not configured in this state dir (run sync_ip_presence first)"
                    .into(),
            };
            for w in work.iter_mut().filter(|w| w.status.summary.found) {
                w.status.unavailable.push(not_configured(&why));
            }
            return;
        }
    };
    for w in work.iter_mut().filter(|w| w.status.summary.found) {
        let Some(upn) = w.status.user_principal_name.as_deref() else {
            w.status
                .unavailable
                .push(not_configured("the user's UPN is not known"));
            continue;
        };
        match today.get(&upn.to_lowercase()) {
            Some(Today::Status(s)) => {
                w.status.office_presence = Some(json!({ "status": s }));
            }
            _ => w.status.unavailable.push(not_configured(
                "the IP presence configuration does not track and display this user",
            )),
        }
    }
}

/// Settle deletions, fill `not_found` parts and compute the summary.
fn finish(mut w: Work, parts: &[Part], recent_days: i64, now: Timestamp) -> UserStatus {
    let s = &mut w.status;
    if w.deleted {
        s.summary.found = false;
        s.sign_in_activity = None;
        s.risk = None;
        s.privileged = None;
        s.presence = None;
    }
    if !s.summary.found {
        s.account = None;
        s.office_presence = None;
        s.unavailable.clear();
        for &part in parts {
            s.unavailable.push(Unavailable {
                part,
                reason: Reason::NotFound,
                needs: None,
                message: if w.deleted {
                    "the user was deleted while their status was read".into()
                } else {
                    "no such user".into()
                },
                status_code: Some(404),
                code: Some("Request_ResourceNotFound".into()),
            });
        }
    }
    let sum = &mut s.summary;
    sum.enabled = s
        .account
        .as_ref()
        .and_then(|a| a.get("accountEnabled"))
        .and_then(Value::as_bool);
    if let Some(a) = &s.sign_in_activity {
        let last = ["lastSuccessfulSignInDateTime", "lastSignInDateTime"]
            .iter()
            .find_map(|k| a.get(*k).and_then(Value::as_str))
            .and_then(|t| t.parse::<Timestamp>().ok());
        sum.days_since_last_sign_in =
            last.map(|t| (now.as_second() - t.as_second()).max(0) / 86_400);
        sum.signed_in_recently = Some(sum.days_since_last_sign_in.is_some_and(|d| d < recent_days));
    }
    sum.risky = s.risk.as_ref().map(|r| {
        let level = r.get("riskLevel").and_then(Value::as_str).unwrap_or("none");
        let state = r.get("riskState").and_then(Value::as_str).unwrap_or("none");
        matches!(level, "low" | "medium" | "high")
            && matches!(state, "atRisk" | "confirmedCompromised")
    });
    sum.admin = s.privileged.as_ref().map(|p| !p.directory_roles.is_empty());
    sum.out_of_office = s.presence.as_ref().map(|p| {
        p.get("outOfOfficeSettings")
            .and_then(|o| o.get("isOutOfOffice"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || p.get("activity").and_then(Value::as_str) == Some("OutOfOffice")
    });
    sum.in_office = s.office_presence.as_ref().map(|o| {
        o.get("status")
            .and_then(|s| s.get("location"))
            .is_some_and(|l| l.is_string())
    });
    w.status
}
