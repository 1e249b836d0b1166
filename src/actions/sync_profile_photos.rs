//! `sync_profile_photos`: the nightly copy of users' profile photos into a folder.
//!
//! Every user, a group's transitive members, or a list of ids/UPNs; each photo
//! written as `<object id>.<ext>` with `manifest.jsonl` beside them, only the
//! photos whose `@odata.mediaEtag` changed downloaded, files of deleted, disabled
//! or photo-less users removed. Graph calls and the rules are in [`crate::photos`]:
//! `GET /users` or `/groups/{id}/transitiveMembers`, then `GET /users/{id}/photo`
//! and `/photo/$value` as JSON batches (User.Read.All, or ProfilePhoto.Read.All
//! with Directory.Read.All; GroupMember.Read.All for a group).
//!
//! The incremental state is the folder's manifest, not the envelope's `state`
//! (see the module doc of [`crate::photos`]); a run stopped by `max_photos`
//! leaves the rest `pending` for the next.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::photos::{self, Failure, Selection, SyncCounts, SyncRequest};
use crate::progress::Progress;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The folder the photos and `manifest.jsonl` go to. Made when only its last
    /// part is missing; must be writable (else exit 6, before any request) and
    /// outside the state dir. Only files the manifest lists are ever removed.
    #[schemars(length(min = 1, max = 4096))]
    pub output_dir: PathBuf,
    /// Only the transitive members of this group (its object id); users only.
    #[serde(default)]
    #[schemars(extend(
        "pattern" = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub group_id: Option<String>,
    /// Only these users: object ids and/or user principal names. Not with `group_id`.
    /// No control characters (CR, LF, NUL, ...).
    #[serde(default)]
    #[schemars(length(min = 1, max = 100000))]
    #[schemars(extend("items" = {"type": "string", "minLength": 1, "maxLength": 1024,
                                 "pattern": "^[^\\u0000-\\u001F\\u007F]*$"}))]
    pub ids: Option<Vec<String>>,
    /// Most photos downloaded this run; the other new or changed ones are counted
    /// as `pending` and fetched by the next run (a first sync spread over nights).
    /// Absent: all.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10_000_000))]
    pub max_photos: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Output {
    #[serde(flatten)]
    pub counts: SyncCounts,
    /// The manifest written (absolute): one JSON line per photo held
    /// (`id`, `upn`, `etag`, `size`, `content_type`, `path` relative to the folder).
    pub manifest_path: String,
    /// The output folder (absolute).
    pub output_dir: String,
    /// `ids` inputs that are no user (Graph's 404); their photos, if held, are removed.
    pub not_found: Vec<String>,
    /// Users whose photo could not be read, written or removed, with Graph's
    /// status and code (the first 100; the rest counted in `failures_more`).
    pub failures: Vec<Failure>,
    pub failures_more: u64,
    /// Graph requests on the wire (pages and `$batch` POSTs, without retries).
    pub requests: u64,
}

pub struct SyncProfilePhotos;

impl Action for SyncProfilePhotos {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "sync_profile_photos",
        title: "Sync profile photos",
        description: "Copy the profile photos of all users, a group's members or a list of users into a folder as <object id>.<ext> with a manifest.jsonl; only photos whose etag changed are downloaded (JSON batching), photos of deleted, disabled or photo-less users are removed, and max_photos spreads a first sync over several runs.",
        permissions: &[&["User.Read.All", "Directory.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Advances,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        let selection = match (&input.group_id, &input.ids) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "/inputs/group_id",
                    "give group_id or ids, not both",
                ));
            }
            (Some(g), None) => Selection::Group(g),
            (None, Some(ids)) => Selection::Users(ids),
            (None, None) => Selection::All,
        };
        let folder = photos::open_folder(
            &input.output_dir,
            ctx.state_dir.as_deref(),
            "/inputs/output_dir",
        )?;
        let graph = ctx.graph()?;
        let progress = if ctx.progress.is_wanted() {
            ctx.progress.clone()
        } else {
            // `run`: a person or a scheduler's log reads it on stderr.
            Progress::new(|_, _, message| eprintln!("sync_profile_photos: {message}"))
        };
        let outcome = photos::sync(
            graph,
            SyncRequest {
                selection,
                folder: &folder,
                max_photos: input
                    .max_photos
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                progress,
            },
        )
        .await?;
        Ok(Reply::ok(Output {
            counts: outcome.counts,
            manifest_path: folder.manifest_path().display().to_string(),
            output_dir: folder.path.display().to_string(),
            not_found: outcome.not_found,
            failures: outcome.failures,
            failures_more: outcome.failures_more,
            requests: outcome.requests,
        }))
    }
}
