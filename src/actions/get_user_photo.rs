//! `get_user_photo`: a user's profile photo.
//!
//! Graph: `GET /users/{id}/photo/$value` (the largest available), or
//! `GET /users/{id}/photos/{size}/$value` for one of Graph's fixed sizes
//! (ProfilePhoto.Read.All, or User.Read.All). A user without a photo is answered
//! 404 with one of four codes ([`NO_PHOTO_CODES`]); that is an answer, not a failure: `json_body.has_photo` is `false`.
//!
//! The bytes go to `output_path` (written to a temporary file beside it, then
//! renamed, so a reader never sees half a photo) or come back base64-encoded.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ActionMeta, Context, LocalWrites, Reply};
use crate::error::{Error, Result};
use crate::graph::{
    ApiFamily, GraphClient, GraphPath, GraphRequest, GraphResponse, MAX_PHOTO_BODY, ResponseHeaders,
};
use crate::jsonl::{check_output_path, parent_dir, private_temp_in};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    /// No control characters (CR, LF, NUL, ...): they have no place in an id,
    /// a UPN or a filter, and could split a request or a log line.
    #[schemars(extend("pattern" = "^[^\\u0000-\\u001F\\u007F]*$"))]
    pub id: String,
    /// One of Graph's photo sizes; absent: the largest photo available.
    #[serde(default)]
    pub size: Option<PhotoSize>,
    /// Write the photo to this file (replaced atomically, mode 0600) instead of returning it
    /// base64-encoded. Its directory must exist; it must be a regular file or a new name,
    /// outside the state dir.
    #[serde(default)]
    #[schemars(length(min = 1, max = 4096))]
    pub output_path: Option<PathBuf>,
}

/// The sizes Graph serves under `/photos/{size}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PhotoSize {
    #[serde(rename = "48x48")]
    S48,
    #[serde(rename = "64x64")]
    S64,
    #[serde(rename = "96x96")]
    S96,
    #[serde(rename = "120x120")]
    S120,
    #[serde(rename = "240x240")]
    S240,
    #[serde(rename = "360x360")]
    S360,
    #[serde(rename = "432x432")]
    S432,
    #[serde(rename = "504x504")]
    S504,
    #[serde(rename = "648x648")]
    S648,
}

impl PhotoSize {
    pub fn as_str(self) -> &'static str {
        match self {
            PhotoSize::S48 => "48x48",
            PhotoSize::S64 => "64x64",
            PhotoSize::S96 => "96x96",
            PhotoSize::S120 => "120x120",
            PhotoSize::S240 => "240x240",
            PhotoSize::S360 => "360x360",
            PhotoSize::S432 => "432x432",
            PhotoSize::S504 => "504x504",
            PhotoSize::S648 => "648x648",
        }
    }
}

#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Output {
    /// `false` when the user has no photo (Graph's 404 `ImageNotFound`,
    /// `ErrorItemNotFound`, `ErrorEntityNotFound` or `GetUserPhoto`).
    pub has_photo: bool,
    /// e.g. `image/jpeg`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The photo's ETag: it changes when the photo does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Size of the photo in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where the photo was written, when `output_path` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    /// The photo, base64 (standard alphabet), when no `output_path` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

pub struct GetUserPhoto;

impl Action for GetUserPhoto {
    type Input = Input;
    type Output = Output;
    const META: ActionMeta = ActionMeta {
        name: "get_user_photo",
        title: "Get user photo",
        description: "Get a user's profile photo, written to a file or returned base64 with its content type; has_photo is false when the user has none.",
        permissions: &[&["ProfilePhoto.Read.All", "User.Read.All"]],
        changes_data: false,
        needs_graph: true,
        incremental: false,
        writes_local_state: LocalWrites::Repeatable,
    };

    async fn run(ctx: &Context, input: Input) -> Result<Reply<Output>> {
        if let Some(path) = &input.output_path {
            check_output_path(path, ctx.state_dir.as_deref(), "/inputs/output_path")?;
        }
        let graph = ctx.graph()?;
        let Some(response) = fetch_photo(graph, &input.id, input.size).await? else {
            return Ok(Reply::ok(Output::default()));
        };
        let mut out = Output {
            has_photo: true,
            content_type: header(&response.headers, "content-type"),
            etag: header(&response.headers, "etag"),
            bytes: Some(response.body.len() as u64),
            ..Output::default()
        };
        match &input.output_path {
            Some(path) => {
                write_atomically(path, &response.body, "/inputs/output_path")?;
                out.output_path = Some(path.display().to_string());
            }
            None => {
                out.content_base64 =
                    Some(base64::engine::general_purpose::STANDARD.encode(&response.body));
            }
        }
        Ok(Reply::from_response(&response, out))
    }
}

/// The `$value` request for one user's photo.
pub fn photo_request(id: &str, size: Option<PhotoSize>) -> GraphRequest {
    let path = match size {
        None => GraphPath::user(id).then("photo/$value"),
        Some(s) => GraphPath::user(id)
            .then("photos")
            .then(s.as_str())
            .then("$value"),
    };
    GraphRequest::get(path, ApiFamily::Directory).max_body(MAX_PHOTO_BODY)
}

/// The photo, or `None` when Graph says the user has none.
pub async fn fetch_photo(
    graph: &GraphClient,
    id: &str,
    size: Option<PhotoSize>,
) -> Result<Option<GraphResponse>> {
    match graph.send(photo_request(id, size)).await {
        Ok(response) => Ok(Some(response)),
        Err(e) if is_no_photo(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub use crate::photos::{NO_PHOTO_CODES, is_no_photo};

/// A response header by name, case-insensitively.
pub fn header(headers: &ResponseHeaders, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
}

/// Write `bytes` to a private temporary file with an unguessable name in
/// `path`'s directory ([`private_temp_in`]), then rename it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8], pointer: &str) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(pointer, "must name a file"))?;
    let prefix = format!(".{}.", name.to_string_lossy());
    // A temporary file not persisted removes itself when dropped.
    let written = private_temp_in(parent_dir(path), &prefix).and_then(|mut f| {
        f.write_all(bytes)?;
        f.as_file().sync_all()?;
        f.persist(path).map(drop).map_err(|e| e.error)
    });
    written.map_err(|e| {
        Error::local(format!(
            "cannot write the photo to {} (for {pointer}): {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_for_default_and_sized_photos() {
        assert_eq!(
            photo_request("u1", None).path.as_str(),
            "users/u1/photo/$value"
        );
        assert_eq!(
            photo_request("$a@b.com", Some(PhotoSize::S648))
                .path
                .as_str(),
            "users('$a@b.com')/photos/648x648/$value"
        );
    }

    #[test]
    fn sizes_serialise_as_graph_names() {
        for s in [PhotoSize::S48, PhotoSize::S120, PhotoSize::S648] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn the_four_no_photo_codes_mean_no_photo() {
        for code in NO_PHOTO_CODES {
            assert!(
                is_no_photo(&Error::graph(404, "x").with_code(code)),
                "{code}"
            );
        }
        assert!(!is_no_photo(
            &Error::graph(403, "x").with_code("ImageNotFound")
        ));
        assert!(!is_no_photo(
            &Error::graph(404, "x").with_code("Request_ResourceNotFound")
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jpg");
        std::fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new", "/x").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(check_output_path(&dir.path().join("nope/p.jpg"), None, "/x").is_err());
        assert!(check_output_path(dir.path(), None, "/x").is_err());
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let mut h = ResponseHeaders::new();
        h.insert("Content-Type".into(), "image/jpeg".into());
        assert_eq!(header(&h, "content-type").as_deref(), Some("image/jpeg"));
    }
}
