//! Continuous presence collection (`msgraph-connector watch presence`): poll many
//! users' presence for as long as it runs and write **only the changes**, as JSON lines.
//!
//! Design, one cycle after another:
//! - The roster: object ids and user principal names (a file) or a group's transitive
//!   members. UPNs are resolved once ([`crate::presences::resolve_upns`], 15 a
//!   request) and the mapping kept in the state store (`state.sqlite3`, or the shared
//!   state of `--state-url`; one key per tenant and app), so a restart does not resolve them again; it is refreshed every
//!   `resolve_every`, and at once for a UPN whose user Graph no longer knows
//!   (`getPresencesByUserId` leaves an unknown id out of its answer: our "404").
//! - A cycle polls every resolved user with `getPresencesByUserId`, 650 ids a request,
//!   one request after another; the Graph client paces them to the published
//!   1,500 requests / 30 s of the presence family (`crate::graph`'s pacer), so a
//!   roster too large for the interval just makes cycles longer, never a 429 storm.
//! - A presence is a change when its `sequenceNumber` differs from the last one seen
//!   (else its value: [`crate::presences::change_key`]); the first cycle reports
//!   everyone (a change from nothing). Lines: `presence` (a change), `gone` (a UPN
//!   that no longer resolves), `not_found` (an object id Graph does not know),
//!   `heartbeat` (counts, every `heartbeat`), `summary` (the last line).
//! - A stop request (SIGTERM, SIGINT) is honoured between batches: the batch in
//!   flight is finished and written, then the summary, and the command exits 0.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::fastpath::guid;
use crate::graph::{ApiFamily, GraphClient, GraphPath, GraphRequest};
use crate::presences::{PRESENCE_CHUNK, change_key, presence_request, presences_of, resolve_upns};
use crate::state::StateStore;

/// Who to watch.
#[derive(Debug, Clone)]
pub enum Roster {
    /// Object ids and/or UPNs, as given (one a line in the file).
    Users(Vec<String>),
    /// A group's transitive members (users only).
    Group(String),
}

/// How often to do what.
#[derive(Debug, Clone)]
pub struct Settings {
    /// From the start of one cycle to the start of the next (a longer cycle runs on at once).
    pub interval: Duration,
    /// Between two heartbeat lines.
    pub heartbeat: Duration,
    /// Between two resolutions of the roster (UPNs, group members).
    pub resolve_every: Duration,
    /// Stop after this many cycles (benchmarks, tests); none: until a signal.
    pub max_cycles: Option<u64>,
}

/// The counts of the heartbeat and summary lines.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    /// Users in the roster (after resolution).
    pub users: usize,
    pub cycles: u64,
    /// `getPresencesByUserId` requests.
    pub requests: u64,
    /// Presence lines written.
    pub changes: u64,
    /// Users Graph does not know (UPNs that no longer resolve, unknown object ids).
    pub not_found: usize,
    /// Requests that failed after the client's retries (the cycle went on).
    pub errors: u64,
    /// UPN resolutions done (the first, the scheduled ones and those after a "404").
    pub resolutions: u64,
}

/// One user of the roster.
#[derive(Debug)]
struct Member {
    /// As given (an object id or a UPN, as written), for the output.
    given: String,
    /// The lower-cased UPN when the member was given by UPN.
    upn: Option<String>,
    /// The object id, once known.
    id: Option<(u128, String)>,
    /// The change key of the last presence written.
    last: Option<String>,
    /// Reported as not found (once, until it is found again).
    missing: bool,
}

/// Where resolved UPNs are kept: one JSON object per tenant and app in the state store.
fn cache_key(graph: &GraphClient) -> String {
    let asset = graph.asset();
    format!("watch.upns {} {}", asset.token_url, asset.client_id)
}

/// The collector. [`Watcher::run`] is the whole command.
pub struct Watcher<'a, W: Write> {
    graph: &'a GraphClient,
    store: Option<StateStore>,
    out: W,
    settings: Settings,
    roster: Roster,
    members: Vec<Member>,
    counts: Counts,
    /// When the next heartbeat line is due (also while a request waits for the pacer).
    next_heartbeat: Instant,
}

impl<'a, W: Write> Watcher<'a, W> {
    pub fn new(
        graph: &'a GraphClient,
        store: Option<StateStore>,
        out: W,
        roster: Roster,
        settings: Settings,
    ) -> Self {
        let settings_heartbeat = settings.heartbeat;
        Watcher {
            graph,
            store,
            out,
            settings,
            roster,
            members: Vec::new(),
            counts: Counts::default(),
            next_heartbeat: Instant::now() + settings_heartbeat,
        }
    }

    /// Poll until `stop` is cancelled (or `max_cycles`), then write the summary.
    pub async fn run(mut self, stop: CancellationToken) -> Result<Counts> {
        self.load_roster().await?;
        let mut resolved_at = Instant::now();
        let mut stopped_by = "cycles";
        'cycles: loop {
            let started = Instant::now();
            if started.duration_since(resolved_at) >= self.settings.resolve_every {
                self.resolve(true).await?;
                resolved_at = Instant::now();
            }
            let batches: Vec<Vec<usize>> = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.id.is_some())
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
                .chunks(PRESENCE_CHUNK)
                .map(<[usize]>::to_vec)
                .collect();
            for batch in batches {
                if stop.is_cancelled() {
                    stopped_by = "signal";
                    break 'cycles;
                }
                self.poll(&batch).await?;
                self.heartbeat_if_due()?;
            }
            self.counts.cycles += 1;
            if self
                .settings
                .max_cycles
                .is_some_and(|n| self.counts.cycles >= n)
            {
                break;
            }
            let next = started + self.settings.interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => break,
                    _ = tokio::time::sleep_until(self.next_heartbeat.into()) => self.heartbeat_if_due()?,
                    _ = stop.cancelled() => { stopped_by = "signal"; break 'cycles; }
                }
            }
        }
        let mut summary = json!(self.counts);
        summary["stopped_by"] = json!(stopped_by);
        self.line("summary", summary)?;
        Ok(self.counts)
    }

    /// The roster's members, with every id known from the store or resolved now.
    async fn load_roster(&mut self) -> Result<()> {
        match &self.roster {
            Roster::Users(given) => {
                let mut seen = std::collections::HashSet::new();
                for g in given {
                    let key = g.to_ascii_lowercase();
                    if !seen.insert(key.clone()) {
                        continue;
                    }
                    let id = guid::parse(g).map(|n| (n, key.clone()));
                    let upn = id.is_none().then_some(key);
                    self.members.push(Member {
                        given: g.clone(),
                        upn,
                        id,
                        last: None,
                        missing: false,
                    });
                }
                self.resolve(false).await
            }
            Roster::Group(_) => self.resolve(true).await,
        }
    }

    /// Resolve the roster: every UPN when `all`, else only those the store does not hold.
    async fn resolve(&mut self, all: bool) -> Result<()> {
        if let Roster::Group(group) = &self.roster {
            let group = group.clone();
            return self.resolve_group(&group).await;
        }
        let mut cached: HashMap<String, String> = HashMap::new();
        if !all
            && let Some(store) = &self.store
            && let Some(text) = store.get(&cache_key(self.graph)).await?
        {
            cached = serde_json::from_str(&text).unwrap_or_default();
        }
        let wanted: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| m.upn.clone())
            .filter(|u| !cached.contains_key(u))
            .collect();
        if !wanted.is_empty() {
            let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let found = resolve_upns(self.graph, &refs).await?;
            self.counts.resolutions += 1;
            for upn in &wanted {
                if let Some((_, id)) = found.get(upn) {
                    cached.insert(upn.clone(), id.clone());
                } else {
                    cached.remove(upn);
                }
            }
            self.save(&cached).await?;
        }
        self.apply(&cached)
    }

    async fn save(&self, cached: &HashMap<String, String>) -> Result<()> {
        if let Some(store) = &self.store {
            let text = serde_json::to_string(cached)
                .map_err(|e| Error::internal(format!("UPN cache does not serialise: {e}")))?;
            store.put(&cache_key(self.graph), &text).await?;
        }
        Ok(())
    }

    /// Give every UPN member the id `cached` holds; a UPN it lacks is gone.
    fn apply(&mut self, cached: &HashMap<String, String>) -> Result<()> {
        let mut gone = Vec::new();
        for m in &mut self.members {
            let Some(upn) = &m.upn else { continue };
            match cached
                .get(upn)
                .and_then(|id| guid::parse(id).map(|n| (n, id)))
            {
                Some((n, id)) => {
                    if m.id.as_ref().is_none_or(|(old, _)| *old != n) {
                        m.last = None;
                    }
                    m.id = Some((n, id.to_ascii_lowercase()));
                    m.missing = false;
                }
                None => {
                    if !m.missing {
                        gone.push(json!({"upn": m.given, "id": m.id.as_ref().map(|(_, s)| s)}));
                    }
                    m.id = None;
                    m.missing = true;
                }
            }
        }
        for g in gone {
            self.line("gone", g)?;
        }
        self.count_members();
        Ok(())
    }

    fn count_members(&mut self) {
        self.counts.users = self.members.len();
        self.counts.not_found = self.members.iter().filter(|m| m.missing).count();
    }

    /// A group's transitive members (users): the roster, replaced.
    async fn resolve_group(&mut self, group: &str) -> Result<()> {
        let request = GraphRequest::get(
            GraphPath::new("groups")
                .value(group)
                .then("transitiveMembers/microsoft.graph.user"),
            ApiFamily::Directory,
        )
        .query("$select", "id,userPrincipalName")
        .query("$top", "999")
        .query("$count", "true")
        .header("ConsistencyLevel", "eventual");
        let mut pages = self.graph.pages(request);
        let mut last: HashMap<u128, Option<String>> = self
            .members
            .drain(..)
            .filter_map(|m| m.id.map(|(n, _)| (n, m.last)))
            .collect();
        while let Some(page) = pages.next_page().await? {
            for item in page.items {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                let Some(n) = guid::parse(id) else { continue };
                let upn = item
                    .get("userPrincipalName")
                    .and_then(Value::as_str)
                    .unwrap_or(id);
                self.members.push(Member {
                    given: upn.to_string(),
                    upn: None,
                    id: Some((n, id.to_ascii_lowercase())),
                    last: last.remove(&n).flatten(),
                    missing: false,
                });
            }
        }
        self.counts.resolutions += 1;
        self.count_members();
        Ok(())
    }

    /// One `getPresencesByUserId` for the members at `batch`; changes written.
    async fn poll(&mut self, batch: &[usize]) -> Result<()> {
        let ids: Vec<&str> = batch
            .iter()
            .filter_map(|&i| self.members[i].id.as_ref().map(|(_, s)| s.as_str()))
            .collect();
        self.counts.requests += 1;
        // The pacer may hold the request for seconds at the limit: heartbeats go on.
        let graph = self.graph;
        let send = graph.send(presence_request(&ids));
        tokio::pin!(send);
        let sent = loop {
            tokio::select! {
                r = &mut send => break r,
                _ = tokio::time::sleep_until(self.next_heartbeat.into()) => self.heartbeat_if_due()?,
            }
        };
        let response = match sent {
            Ok(r) => r,
            // A lost connection or a 5xx/429 after the client's retries: counted, and the
            // next batch goes on; a refused credential or a local failure stops.
            // A 4xx (a permission the app lacks, a request Graph refuses) would fail the
            // same way every cycle: it stops the run instead.
            Err(e)
                if e.kind == ErrorKind::Network
                    || (e.kind == ErrorKind::Graph
                        && e.status_code.is_none_or(|s| s >= 500 || s == 429)) =>
            {
                self.counts.errors += 1;
                tracing::warn!(error = %e.message, "watch: a presence batch failed; going on");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let by_id: HashMap<u128, usize> = batch
            .iter()
            .filter_map(|&i| self.members[i].id.as_ref().map(|(n, _)| (*n, i)))
            .collect();
        let mut answered = std::collections::HashSet::with_capacity(batch.len());
        let mut changed: Vec<(usize, &RawValue)> = Vec::new();
        let scanned = presences_of(&response)?;
        for (id, presence) in &scanned {
            let Some(&i) = id.and_then(|n| by_id.get(&n)) else {
                continue;
            };
            answered.insert(i);
            let key = change_key(presence);
            let m = &mut self.members[i];
            m.missing = false;
            if m.last.as_deref() != Some(key.as_str()) {
                m.last = Some(key);
                changed.push((i, presence));
            }
        }
        let at = jiff::Timestamp::now().to_string();
        for (i, presence) in changed {
            let m = &self.members[i];
            #[derive(Serialize)]
            struct Line<'a> {
                kind: &'static str,
                at: &'a str,
                id: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                upn: Option<&'a str>,
                presence: &'a RawValue,
            }
            let line = Line {
                kind: "presence",
                at: &at,
                id: m.id.as_ref().map_or("", |(_, s)| s.as_str()),
                upn: m.upn.as_ref().map(|_| m.given.as_str()),
                presence,
            };
            serde_json::to_writer(&mut self.out, &line).map_err(|e| self.write_failed(e))?;
            self.out
                .write_all(b"\n")
                .map_err(|e| self.write_failed(e))?;
            self.counts.changes += 1;
        }
        // Left out of the answer: Graph does not know the id (a deleted user).
        let mut recheck = false;
        let mut unknown = Vec::new();
        for &i in batch {
            if answered.contains(&i) {
                continue;
            }
            let m = &mut self.members[i];
            if m.upn.is_some() {
                recheck = true;
            } else if !m.missing {
                m.missing = true;
                unknown.push(m.given.clone());
            }
        }
        for id in unknown {
            self.line("not_found", json!({"id": id}))?;
        }
        self.out.flush().map_err(|e| self.write_failed(e))?;
        if recheck {
            // Only the UPNs of this batch that were not answered are asked again.
            self.re_resolve(batch, &answered).await?;
        }
        self.count_members();
        Ok(())
    }

    /// Resolve again the UPN members of `batch` Graph did not answer for.
    async fn re_resolve(
        &mut self,
        batch: &[usize],
        answered: &std::collections::HashSet<usize>,
    ) -> Result<()> {
        let upns: Vec<String> = batch
            .iter()
            .filter(|i| !answered.contains(i))
            .filter_map(|&i| self.members[i].upn.clone())
            .collect();
        let refs: Vec<&str> = upns.iter().map(String::as_str).collect();
        let found = resolve_upns(self.graph, &refs).await?;
        self.counts.resolutions += 1;
        let mut cached: HashMap<String, String> = match &self.store {
            Some(store) => store
                .get(&cache_key(self.graph))
                .await?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            None => HashMap::new(),
        };
        // Members outside this batch keep what they have.
        for m in &self.members {
            if let (Some(upn), Some((_, id))) = (&m.upn, &m.id) {
                cached.entry(upn.clone()).or_insert_with(|| id.clone());
            }
        }
        for upn in &upns {
            match found.get(upn) {
                Some((_, id)) => cached.insert(upn.clone(), id.clone()),
                None => cached.remove(upn),
            };
        }
        self.save(&cached).await?;
        self.apply(&cached)
    }

    /// The heartbeat line, when it is due.
    fn heartbeat_if_due(&mut self) -> Result<()> {
        if Instant::now() >= self.next_heartbeat {
            self.line("heartbeat", json!(self.counts))?;
            self.next_heartbeat = Instant::now() + self.settings.heartbeat;
        }
        Ok(())
    }

    /// A line `{"kind": kind, "at": now, ...fields}`.
    fn line(&mut self, kind: &str, fields: Value) -> Result<()> {
        let mut line = json!({"kind": kind, "at": jiff::Timestamp::now().to_string()});
        if let (Value::Object(l), Value::Object(f)) = (&mut line, fields) {
            l.extend(f);
        }
        serde_json::to_writer(&mut self.out, &line).map_err(|e| self.write_failed(e))?;
        self.out
            .write_all(b"\n")
            .map_err(|e| self.write_failed(e))?;
        self.out.flush().map_err(|e| self.write_failed(e))
    }

    fn write_failed(&self, e: impl std::fmt::Display) -> Error {
        Error::local(format!("cannot write the watch output: {e}"))
    }
}
