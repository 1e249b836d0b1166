//! Profile photo sync: the use case behind `sync_profile_photos`, the nightly
//! copy of every selected user's profile photo into one folder.
//!
//! The folder holds `<object id>.<ext>` per user with a photo and
//! [`MANIFEST`] (JSON lines: id, UPN, etag, size, content type, file name). One run:
//!
//! 1. **the folder**, before any request: made if only its last part is missing,
//!    refused inside the state dir, probed writable (kind `local`, exit 6 when
//!    not), and locked (`flock` on the folder itself), so two runs never write
//!    it at once; temporary files a killed run left are removed;
//! 2. **what we hold**: the last run's manifest, each entry trusted only while its
//!    file is there with the recorded size. The manifest is the incremental state,
//!    not the envelope: it cannot disagree with the files it describes, survives a
//!    platform that loses `state`, and a re-run with the folder intact downloads
//!    nothing new;
//! 3. **who**: every user (`GET /users`, pages of 999), a group's transitive
//!    members (`GET /groups/{id}/transitiveMembers`, users only), or a list of ids
//!    and UPNs (one `GET /users/{id}` batch item each), with `accountEnabled`;
//! 4. **photo metadata** of each enabled user (`GET /users/{id}/photo`, 20 to a
//!    `$batch`): its `@odata.mediaEtag` changes when the photo does
//!    (<https://learn.microsoft.com/en-us/graph/api/profilephoto-get>, the
//!    metadata answer carries `@odata.mediaEtag`; the etag is the documented
//!    change marker of a media entity, OData v4.01 JSON format §4.6.3 "mediaEtag");
//! 5. **bytes** of the photos whose etag differs from the manifest or whose file
//!    is gone (`GET /users/{id}/photo/$value`, 20 to a `$batch`, which carries
//!    an image base64-encoded: <https://learn.microsoft.com/en-us/graph/json-batching>),
//!    at most `max_photos` a run; the rest are `pending` and keep their old file;
//! 6. **removal** of the files of users no longer selected (deleted, left the
//!    group, not in the list), disabled (`accountEnabled` false) or now without a
//!    photo (Graph's "no photo" 404s, [`NO_PHOTO_CODES`], or the documented 200
//!    with a 1x1 image and an empty `@odata.mediaEtag`). Only names the
//!    manifest lists are ever removed, and only as `<id>.<ext>` rebuilt from a
//!    checked id: nothing else in the folder is touched;
//! 7. **the manifest**, replaced atomically, also when a fatal error ends the run
//!    midway, so what was written is not downloaded again.
//!
//! Every batch item is paced, retried on 429/503/504 with its own `Retry-After`
//! and answered on its own ([`GraphClient::batch`]): one user's failure is listed
//! with its Graph code and the others carry on. Files are written to a temporary
//! name in the folder and renamed into place, mode 0644 (photos are meant to be
//! served).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::graph::{
    ApiFamily, BatchItem, GraphClient, GraphPath, GraphRequest, GraphResponse, MAX_PHOTO_BODY,
};
use crate::jsonl::{parent_dir, private_temp_in};
use crate::progress::Progress;

/// The manifest's file name in the output folder.
pub const MANIFEST: &str = "manifest.jsonl";
/// The user properties read: all v1.0 user properties (`schemas/v1.0-Prod.csdl`).
const USER_SELECT: &str = "id,userPrincipalName,accountEnabled";
/// Graph's largest page for users and directory-object lists (the list-users and
/// group-list-transitivemembers pages: `$top` 1 to 999).
const PAGE: &str = "999";
/// Batch items per progress step: ten `$batch` requests.
const STEP: usize = 200;
/// Failures listed one by one; the rest are counted.
pub const MAX_LISTED_FAILURES: usize = 100;

/// The codes of Graph's 404 for a user without a photo. All four are seen in real
/// tenants, depending on the mailbox and profile store behind the user: `ImageNotFound`,
/// `ErrorItemNotFound` ("The photo wasn't found."), `ErrorEntityNotFound`,
/// `GetUserPhoto` (collected in issue 11 from public msgraph SDK and docs threads;
/// Microsoft documents none of them on the profilePhoto page).
pub const NO_PHOTO_CODES: [&str; 4] = [
    "ImageNotFound",
    "ErrorItemNotFound",
    "ErrorEntityNotFound",
    "GetUserPhoto",
];

/// Graph's "this user has no photo": a 404 with one of [`NO_PHOTO_CODES`]. A 404
/// for the user itself (`Request_ResourceNotFound`) stays an error.
pub fn is_no_photo(e: &Error) -> bool {
    e.kind == ErrorKind::Graph
        && e.status_code == Some(404)
        && e.code
            .as_deref()
            .is_some_and(|c| NO_PHOTO_CODES.iter().any(|n| n.eq_ignore_ascii_case(c)))
}

/// A 404 that is not "no photo": the user is gone.
fn is_gone(e: &Error) -> bool {
    e.kind == ErrorKind::Graph && e.status_code == Some(404) && !is_no_photo(e)
}

/// Whose photos to copy.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every user of the tenant.
    All,
    /// A group's transitive members (users only), by the group's object id.
    Group(&'a str),
    /// These object ids and/or UPNs.
    Users(&'a [String]),
}

/// One run's settings.
pub struct SyncRequest<'a> {
    pub selection: Selection<'a>,
    /// The folder ([`open_folder`] checked it).
    pub folder: &'a Folder,
    /// Most photos downloaded this run (`None`: all).
    pub max_photos: Option<usize>,
    pub progress: Progress,
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestEntry {
    /// The user's object id.
    pub id: String,
    /// The user's principal name when the photo was read.
    pub upn: String,
    /// Graph's `@odata.mediaEtag` of the photo written.
    pub etag: String,
    /// Bytes in the file.
    pub size: u64,
    /// e.g. `image/jpeg`.
    pub content_type: String,
    /// The file's name in the output folder: `<id>.<ext>`.
    pub path: String,
}

/// What a run did, user by user summed up.
#[derive(Debug, Default, Clone, Serialize, JsonSchema)]
pub struct SyncCounts {
    /// Users selected (distinct).
    pub users: u64,
    /// Photos written this run (new or changed).
    pub downloaded: u64,
    /// Photos whose etag matched the manifest and whose file is intact: not downloaded.
    pub unchanged: u64,
    /// Files removed: users deleted, no longer selected, disabled, or now without a photo.
    pub removed: u64,
    /// Enabled users without a photo.
    pub no_photo: u64,
    /// Users with `accountEnabled` false (their photos are not kept).
    pub disabled: u64,
    /// Users whose photo could not be read or written this run (listed in `failures`);
    /// a file they had is kept.
    pub failed: u64,
    /// New or changed photos left for the next run by `max_photos`; a file they had is kept.
    pub pending: u64,
    /// Bytes of the photos written.
    pub bytes_downloaded: u64,
}

/// Why one user's photo was not brought up to date.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Failure {
    /// The user's object id (or, for a list input that could not be read, the input).
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// `user` (reading the user), `metadata`, `download` or `remove`.
    pub step: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Graph's `error.code` (or ours: `Throttled` after retries, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl Failure {
    fn new(id: &str, upn: Option<&str>, step: &'static str, e: &Error) -> Self {
        Failure {
            id: id.to_string(),
            upn: upn.map(str::to_string),
            step,
            status_code: e.status_code,
            code: e.code.clone(),
            message: e.message.clone(),
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    pub counts: SyncCounts,
    /// List inputs that are no user (404).
    pub not_found: Vec<String>,
    pub failures: Vec<Failure>,
    /// How many failures [`Self::failures`] leaves out.
    pub failures_more: u64,
    pub requests: u64,
}

/// The checked, locked output folder.
#[derive(Debug)]
pub struct Folder {
    pub path: PathBuf,
    /// Held for the run: the `flock` on the folder.
    _lock: Option<File>,
}

impl Folder {
    pub fn manifest_path(&self) -> PathBuf {
        self.path.join(MANIFEST)
    }
}

/// Check the output folder before any request (see the module doc, step 1).
/// Refusals point at `pointer`.
pub fn open_folder(dir: &Path, state_dir: Option<&Path>, pointer: &str) -> Result<Folder> {
    let bad = |m: String| Error::invalid(pointer, m);
    let shown = dir.display();
    let exists = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(bad(format!("cannot inspect {shown}: {e}"))),
        Ok(_) => true,
    };
    // Where it is (or will be), links resolved, before anything is made.
    let real = if exists {
        if !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            return Err(bad(format!("{shown} is not a folder")));
        }
        dir.canonicalize()
            .map_err(|e| bad(format!("cannot inspect {shown}: {e}")))?
    } else {
        let parent = parent_dir(dir);
        let (Some(name), Ok(parent)) = (dir.file_name(), parent.canonicalize()) else {
            return Err(bad(format!(
                "its parent folder {} does not exist",
                parent.display()
            )));
        };
        if !parent.is_dir() {
            return Err(bad(format!("{} is not a folder", parent.display())));
        }
        parent.join(name)
    };
    if let Some(state) = state_dir.and_then(|d| d.canonicalize().ok())
        && real.starts_with(&state)
    {
        return Err(bad(format!(
            "{shown} is inside the state dir (--state-dir), which holds the token cache \
             and the store; write photos elsewhere"
        )));
    }
    if !exists {
        std::fs::create_dir(&real)
            .map_err(|e| Error::local(format!("cannot create the output folder {shown}: {e}")))?;
    }
    // Asked by creating the very kind of file the writes use (holds for root, ACLs
    // and read-only mounts alike), before any request.
    private_temp_in(&real, ".msgraph-connector-probe.")
        .map(drop)
        .map_err(|e| Error::local(format!("cannot write in the output folder {shown}: {e}")))?;
    let lock = File::open(&real)
        .map_err(|e| Error::local(format!("cannot open the output folder {shown}: {e}")))?;
    let lock = match lock.try_lock() {
        Ok(()) => Some(lock),
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::local(format!(
                "another sync_profile_photos run is writing {shown}; this one changed nothing"
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            // A file system without locks: carry on unlocked rather than refuse.
            tracing::warn!("cannot lock the output folder {shown}: {e}");
            None
        }
    };
    if lock.is_some() {
        remove_leftovers(&real);
    }
    Ok(Folder {
        path: real,
        _lock: lock,
    })
}

/// Remove the temporary files a killed run left (`.{name}.{12 random}`, where
/// `name` is a photo's or the manifest's): with the folder locked, nobody else is
/// writing them. Nothing of another shape is touched.
fn remove_leftovers(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_leftover(name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn is_leftover(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((target, random)) = rest.rsplit_once('.') else {
        return false;
    };
    let ours = target == MANIFEST
        || target
            .rsplit_once('.')
            .is_some_and(|(id, ext)| safe_id(id) && EXTENSIONS.contains(&ext));
    ours && random.len() == 12 && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An object id we accept as a file name: Graph's ids are GUIDs; anything with a
/// path separator, a dot or other punctuation is refused, so a name built from it
/// stays inside the folder.
fn safe_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The file extension for a photo's content type. Graph serves profile photos as
/// JPEG (profilephoto-get: "the supported formats are JPEG"... for uploads; answers
/// carry `image/jpeg`); the others are what an image `Content-Type` may say.
/// Every extension [`extension`] gives.
const EXTENSIONS: [&str; 6] = ["jpg", "png", "gif", "bmp", "webp", "bin"];

pub fn extension(content_type: &str) -> &'static str {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match t.as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "image/webp" => "webp",
        _ => "bin",
    }
}

fn file_name(id: &str, content_type: &str) -> String {
    format!("{id}.{}", extension(content_type))
}

/// The last run's manifest: entries whose id and name check out, by id, each
/// with whether its file is there with the recorded size. A line we cannot read
/// is skipped (its user's photo is fetched again).
fn read_manifest(folder: &Path) -> Result<BTreeMap<String, (ManifestEntry, bool)>> {
    let path = folder.join(MANIFEST);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(Error::local(format!(
                "cannot read the manifest {}: {e}",
                path.display()
            )));
        }
    };
    let mut held = BTreeMap::new();
    let mut skipped = 0u64;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| {
            Error::local(format!("cannot read the manifest {}: {e}", path.display()))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ManifestEntry>(&line) {
            Ok(e) if safe_id(&e.id) && e.path == file_name(&e.id, &e.content_type) => {
                let intact = std::fs::symlink_metadata(folder.join(&e.path))
                    .is_ok_and(|m| m.is_file() && m.len() == e.size);
                held.insert(e.id.clone(), (e, intact));
            }
            _ => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            "{skipped} lines of {} could not be read; those photos are fetched again",
            path.display()
        );
    }
    Ok(held)
}

/// Write `bytes` as `folder/name`: a private temporary file beside it, 0644, renamed into place.
fn write_file(folder: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let target = folder.join(name);
    let written = private_temp_in(folder, &format!(".{name}.")).and_then(|mut f| {
        f.write_all(bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        f.as_file().sync_all()?;
        f.persist(&target).map(drop).map_err(|e| e.error)
    });
    written.map_err(|e| Error::local(format!("cannot write {}: {e}", target.display())))
}

fn write_manifest(folder: &Path, entries: &BTreeMap<String, ManifestEntry>) -> Result<()> {
    let mut text = Vec::with_capacity(entries.len() * 160);
    for e in entries.values() {
        serde_json::to_writer(&mut text, e).map_err(|e| Error::internal(e.to_string()))?;
        text.push(b'\n');
    }
    write_file(folder, MANIFEST, &text)
}

/// A selected user.
struct Member {
    id: String,
    upn: String,
    enabled: bool,
}

impl Member {
    fn from_json(v: &Value) -> Option<Member> {
        Some(Member {
            id: v.get("id")?.as_str()?.to_string(),
            upn: v
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            // Absent (not readable) counts as enabled: a photo is not removed on a guess.
            enabled: v.get("accountEnabled").and_then(Value::as_bool) != Some(false),
        })
    }
}

/// Where a run is: the manifest as the folder now stands, and the outcome so far.
struct Run<'a> {
    graph: &'a GraphClient,
    folder: &'a Path,
    entries: BTreeMap<String, ManifestEntry>,
    out: SyncOutcome,
    progress: Progress,
    last_shown: Option<Instant>,
}

/// Run one sync (see the module doc). The manifest is written whatever happens
/// after the folder was read, so an error midway loses nothing done.
pub async fn sync(graph: &GraphClient, request: SyncRequest<'_>) -> Result<SyncOutcome> {
    let folder = request.folder.path.as_path();
    let held = read_manifest(folder)?;
    let intact: HashSet<String> = held
        .iter()
        .filter(|(_, (_, ok))| *ok)
        .map(|(id, _)| id.clone())
        .collect();
    let mut run = Run {
        graph,
        folder,
        entries: held.into_iter().map(|(id, (e, _))| (id, e)).collect(),
        out: SyncOutcome::default(),
        progress: request.progress,
        last_shown: None,
    };
    let result = run
        .work(request.selection, request.max_photos, &intact)
        .await;
    let written = write_manifest(folder, &run.entries);
    result?;
    written?;
    Ok(run.out)
}

impl Run<'_> {
    async fn work(
        &mut self,
        selection: Selection<'_>,
        max_photos: Option<usize>,
        intact: &HashSet<String>,
    ) -> Result<()> {
        let (members, keep) = self.select(selection).await?;
        self.out.counts.users = members.len() as u64;

        // Files of users no longer selected, or disabled.
        let selected: HashMap<&str, &Member> = members.iter().map(|m| (m.id.as_str(), m)).collect();
        let stale: Vec<String> = self
            .entries
            .values()
            .filter(|e| match selected.get(e.id.as_str()) {
                Some(m) => !m.enabled,
                None => {
                    !keep.contains(&e.id.to_lowercase()) && !keep.contains(&e.upn.to_lowercase())
                }
            })
            .map(|e| e.id.clone())
            .collect();
        for id in stale {
            self.remove(&id);
        }
        self.out.counts.disabled = members.iter().filter(|m| !m.enabled).count() as u64;

        // Metadata of every enabled user: which photos changed.
        let enabled: Vec<&Member> = members.iter().filter(|m| m.enabled).collect();
        let metadata = self
            .batches(
                enabled
                    .iter()
                    .map(|m| {
                        GraphRequest::get(
                            GraphPath::user(&m.id).then("photo"),
                            ApiFamily::Directory,
                        )
                    })
                    .collect(),
                "photo metadata read",
            )
            .await?;
        let mut wanted: Vec<(&Member, String, String)> = Vec::new();
        let mut first_error: Option<Error> = None;
        let mut read_any = enabled.is_empty();
        for (&m, r) in enabled.iter().zip(metadata) {
            match r.and_then(|resp| photo_metadata(&resp)) {
                // profilephoto-get's "photo hasn't been uploaded" answer: 200, a 1x1
                // image/gif, `@odata.mediaEtag` empty. No etag, no photo.
                Ok((etag, _)) if etag.is_empty() => {
                    read_any = true;
                    self.out.counts.no_photo += 1;
                    self.remove(&m.id);
                }
                Ok((etag, content_type)) => {
                    read_any = true;
                    let same = intact.contains(&m.id)
                        && self.entries.get(&m.id).is_some_and(|e| e.etag == etag);
                    if same {
                        self.out.counts.unchanged += 1;
                        if let Some(e) = self.entries.get_mut(&m.id) {
                            e.upn.clone_from(&m.upn);
                        }
                    } else {
                        wanted.push((m, etag, content_type));
                    }
                }
                Err(e) if is_no_photo(&e) => {
                    read_any = true;
                    self.out.counts.no_photo += 1;
                    self.remove(&m.id);
                }
                Err(e) if is_gone(&e) => {
                    read_any = true;
                    self.remove(&m.id);
                }
                Err(e) => {
                    self.fail(Failure::new(&m.id, Some(m.upn.as_str()), "metadata", &e));
                    first_error.get_or_insert(e);
                }
            }
        }
        // Not one user could be read (a missing permission, Graph down): that is the
        // run's failure, not ten thousand listed ones.
        if !read_any && let Some(e) = first_error {
            return Err(e);
        }

        // The bytes of new and changed photos, up to the cap.
        let cap = max_photos.unwrap_or(usize::MAX).min(wanted.len());
        self.out.counts.pending = (wanted.len() - cap) as u64;
        wanted.truncate(cap);
        let bytes = self
            .batches(
                wanted
                    .iter()
                    .map(|(m, ..)| {
                        GraphRequest::get(
                            GraphPath::user(&m.id).then("photo/$value"),
                            ApiFamily::Directory,
                        )
                        .max_body(MAX_PHOTO_BODY)
                    })
                    .collect(),
                "photos downloaded",
            )
            .await?;
        for ((m, etag, meta_type), r) in wanted.into_iter().zip(bytes) {
            match r {
                Ok(resp) => {
                    let content_type = header(&resp, "content-type")
                        .filter(|t| t.to_ascii_lowercase().starts_with("image/"))
                        .unwrap_or(meta_type);
                    self.store(m, etag, content_type, &resp.body)?;
                }
                Err(e) if is_no_photo(&e) => {
                    self.out.counts.no_photo += 1;
                    self.remove(&m.id);
                }
                Err(e) if is_gone(&e) => self.remove(&m.id),
                Err(e) => self.fail(Failure::new(&m.id, Some(m.upn.as_str()), "download", &e)),
            }
        }
        Ok(())
    }

    /// The selected users (distinct, enabled or not) and, for list inputs that
    /// could not be read, the lower-cased inputs whose files must be kept.
    async fn select(&mut self, selection: Selection<'_>) -> Result<(Vec<Member>, HashSet<String>)> {
        let mut keep = HashSet::new();
        let raw: Vec<Member> = match selection {
            Selection::All => {
                let request = GraphRequest::get(GraphPath::new("users"), ApiFamily::Directory)
                    .query("$select", USER_SELECT)
                    .query("$top", PAGE);
                self.list(request).await?
            }
            Selection::Group(group) => {
                // transitiveMembers lists groups, devices, service principals too:
                // only users have photos to copy (group-list-transitivemembers page).
                let request = GraphRequest::get(
                    GraphPath::new("groups")
                        .value(group)
                        .then("transitiveMembers"),
                    ApiFamily::Directory,
                )
                .query("$select", USER_SELECT)
                .query("$top", PAGE);
                self.list(request).await?
            }
            Selection::Users(inputs) => {
                let mut seen = HashSet::new();
                let inputs: Vec<&String> = inputs
                    .iter()
                    .filter(|i| seen.insert(i.to_lowercase()))
                    .collect();
                let answers = self
                    .batches(
                        inputs
                            .iter()
                            .map(|i| {
                                GraphRequest::get(GraphPath::user(i), ApiFamily::Directory)
                                    .query("$select", USER_SELECT)
                            })
                            .collect(),
                        "users read",
                    )
                    .await?;
                let mut members = Vec::new();
                for (input, r) in inputs.into_iter().zip(answers) {
                    match r.and_then(|resp| resp.json::<Value>()) {
                        Ok(v) => match Member::from_json(&v) {
                            Some(m) => members.push(m),
                            None => self.out.not_found.push(input.clone()),
                        },
                        Err(e) if is_gone(&e) => self.out.not_found.push(input.clone()),
                        Err(e) => {
                            keep.insert(input.to_lowercase());
                            self.fail(Failure::new(input, None, "user", &e));
                        }
                    }
                }
                members
            }
        };
        let mut seen = HashSet::new();
        let mut members = Vec::with_capacity(raw.len());
        for m in raw {
            if !safe_id(&m.id) {
                let e = Error::graph(200, "Graph gave an object id that is not a GUID")
                    .with_code("UnexpectedId");
                self.fail(Failure::new(&m.id, Some(m.upn.as_str()), "user", &e));
                keep.insert(m.id.to_lowercase());
                continue;
            }
            if seen.insert(m.id.clone()) {
                members.push(m);
            }
        }
        Ok((members, keep))
    }

    /// A user list, every page; only users (a group's other members are left out).
    async fn list(&mut self, request: GraphRequest) -> Result<Vec<Member>> {
        let mut pages = self.graph.pages(request);
        let mut members = Vec::new();
        while let Some(page) = pages.next_page().await? {
            self.out.requests += 1;
            for v in &page.items {
                let user = v
                    .get("@odata.type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "#microsoft.graph.user");
                if user && let Some(m) = Member::from_json(v) {
                    members.push(m);
                }
            }
            self.show(members.len() as u64, None, "users listed", false);
        }
        Ok(members)
    }

    /// `requests` as JSON batches, [`STEP`] items at a time so progress moves.
    async fn batches(
        &mut self,
        requests: Vec<GraphRequest>,
        what: &str,
    ) -> Result<Vec<Result<GraphResponse>>> {
        let total = requests.len() as u64;
        let mut out = Vec::with_capacity(requests.len());
        let mut items = requests.into_iter().map(BatchItem::new).peekable();
        while items.peek().is_some() {
            let step: Vec<BatchItem> = items.by_ref().take(STEP).collect();
            self.out.requests += crate::graph::batch::batch_count(&step)? as u64;
            out.extend(self.graph.batch(step).await?);
            self.show(
                out.len() as u64,
                Some(total),
                what,
                out.len() as u64 == total,
            );
        }
        Ok(out)
    }

    /// Write a downloaded photo, drop a file of another type it replaces.
    fn store(
        &mut self,
        m: &Member,
        etag: String,
        content_type: String,
        bytes: &[u8],
    ) -> Result<()> {
        let name = file_name(&m.id, &content_type);
        write_file(self.folder, &name, bytes)?;
        if let Some(old) = self.entries.get(&m.id)
            && old.path != name
        {
            let _ = std::fs::remove_file(self.folder.join(&old.path));
        }
        self.out.counts.downloaded += 1;
        self.out.counts.bytes_downloaded += bytes.len() as u64;
        self.entries.insert(
            m.id.clone(),
            ManifestEntry {
                id: m.id.clone(),
                upn: m.upn.clone(),
                etag,
                size: bytes.len() as u64,
                content_type,
                path: name,
            },
        );
        Ok(())
    }

    /// Remove a user's file and manifest entry, if we hold one.
    fn remove(&mut self, id: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        // The name is rebuilt from the checked id, never taken from the file as written.
        let name = file_name(&entry.id, &entry.content_type);
        match std::fs::remove_file(self.folder.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let upn = entry.upn.clone();
                let err = Error::local(format!("cannot remove {name}: {e}"));
                self.fail(Failure::new(id, Some(upn.as_str()), "remove", &err));
                return;
            }
        }
        self.entries.remove(id);
        self.out.counts.removed += 1;
    }

    fn fail(&mut self, failure: Failure) {
        self.out.counts.failed += 1;
        if self.out.failures.len() < MAX_LISTED_FAILURES {
            self.out.failures.push(failure);
        } else {
            self.out.failures_more += 1;
        }
    }

    /// A progress step, at most one every two seconds besides the last of a phase.
    fn show(&mut self, done: u64, total: Option<u64>, what: &str, last: bool) {
        if !self.progress.is_wanted() {
            return;
        }
        let now = Instant::now();
        if !last
            && self
                .last_shown
                .is_some_and(|t| now.duration_since(t).as_secs() < 2)
        {
            return;
        }
        self.last_shown = Some(now);
        let message = match total {
            Some(t) => format!("{done} of {t} {what}"),
            None => format!("{done} {what}"),
        };
        self.progress.report(done, total, &message);
    }
}

/// `@odata.mediaEtag` and `@odata.mediaContentType` of a photo's metadata.
fn photo_metadata(resp: &GraphResponse) -> Result<(String, String)> {
    let v: Value = resp.json()?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok((
        text("@odata.mediaEtag").unwrap_or_default(),
        text("@odata.mediaContentType").unwrap_or_else(|| "image/jpeg".to_string()),
    ))
}

fn header(resp: &GraphResponse, name: &str) -> Option<String> {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_at_a_time_holds_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_folder(dir.path(), None, "/x").unwrap();
        let e = open_folder(dir.path(), None, "/x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Local);
        assert!(
            e.message.contains("another sync_profile_photos run"),
            "{e:?}"
        );
        drop(first);
        open_folder(dir.path(), None, "/x").unwrap();
    }

    #[test]
    fn a_killed_runs_temporary_files_are_recognised_and_nothing_else() {
        let id = "4f3a0c3e-1b2d-4c5e-8f90-123456789abc";
        assert!(is_leftover(&format!(".{id}.jpg.AbC123xyz789")));
        assert!(is_leftover(".manifest.jsonl.AbC123xyz789"));
        for other in [
            format!("{id}.jpg"),
            format!(".{id}.jpg"),
            format!(".{id}.exe.AbC123xyz789"),
            format!(".{id}.jpg.short"),
            ".bashrc".to_string(),
            ".notes.txt.AbC123xyz789".to_string(),
        ] {
            assert!(!is_leftover(&other), "{other}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!(".{id}.jpg.AbC123xyz789")), b"x").unwrap();
        std::fs::write(dir.path().join(".bashrc"), b"x").unwrap();
        let _folder = open_folder(dir.path(), None, "/x").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [".bashrc"]);
    }

    #[test]
    fn extensions_come_from_the_content_type() {
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(extension("IMAGE/PNG; charset=x"), "png");
        assert_eq!(extension("application/octet-stream"), "bin");
    }

    #[test]
    fn only_guid_like_ids_name_files() {
        assert!(safe_id("4f3a0c3e-1b2d-4c5e-8f90-123456789abc"));
        for bad in ["", "../x", "a/b", "a.b", "x\0", "ab c"] {
            assert!(!safe_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_manifest_trusts_only_intact_files_and_checked_names() {
        let dir = tempfile::tempdir().unwrap();
        let id = "4f3a0c3e-1b2d-4c5e-8f90-123456789abc";
        let entry = |id: &str, path: &str, size: u64| ManifestEntry {
            id: id.into(),
            upn: "a@b".into(),
            etag: "e".into(),
            size,
            content_type: "image/jpeg".into(),
            path: path.into(),
        };
        let mut entries = BTreeMap::new();
        entries.insert(id.to_string(), entry(id, &format!("{id}.jpg"), 3));
        let other = "00000000-0000-4000-8000-000000000001";
        entries.insert(other.to_string(), entry(other, &format!("{other}.jpg"), 9));
        write_manifest(dir.path(), &entries).unwrap();
        std::fs::write(dir.path().join(format!("{id}.jpg")), b"abc").unwrap();
        std::fs::write(dir.path().join(format!("{other}.jpg")), b"short").unwrap();
        // A planted line naming a file outside the folder is not an entry.
        let mut text = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
        text.push_str(&serde_json::to_string(&entry("../etc", "../etc/passwd", 1)).unwrap());
        text.push_str("\nnot json\n");
        std::fs::write(dir.path().join(MANIFEST), text).unwrap();
        let held = read_manifest(dir.path()).unwrap();
        assert_eq!(held.len(), 2);
        assert!(held[id].1, "intact");
        assert!(!held[other].1, "wrong size");
    }
}
