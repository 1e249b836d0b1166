//! Profile photos: metadata (`/photo`, `/photos/{WxH}`) and bytes (`/$value`), with
//! one of Graph's four "no photo" 404s ([`NO_PHOTO_CODES`]) for a user without a photo
//! or a size it lacks, or for half of the photo-less users' `/photo` metadata the
//! documented 1x1 answer with an empty `@odata.mediaEtag`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::common::{GResult, context, json_response, require, resolve_user};
use crate::access_token::Caller;
use crate::http_error::GraphError;
use crate::state::Shared;

/// Sizes Graph keeps of a photo (square, up to the original).
const PHOTO_SIZES: &[u32] = &[48, 64, 96, 120, 240, 360, 432, 504, 648];

/// The 404 codes a user without a photo is answered with, with their messages. Real
/// tenants answer all four, depending on the mailbox and the profile store behind the
/// user (issue 11 of this project collects them; public threads: microsoftgraph
/// msgraph-sdk-dotnet and docs-contrib issues on "ImageNotFound", "ErrorItemNotFound:
/// The photo wasn't found.", "ErrorEntityNotFound", "GetUserPhoto"). Every one means
/// "no photo"; which one is fixed per user, so a test can pick each.
pub const NO_PHOTO_CODES: [(&str, &str); 4] = [
    (
        "ImageNotFound",
        "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.",
    ),
    ("ErrorItemNotFound", "The photo wasn't found."),
    (
        "ErrorEntityNotFound",
        "The requested user's photo was not found.",
    ),
    (
        "GetUserPhoto",
        "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ProfileNotFoundException' was thrown.",
    ),
];

/// The "no photo" 404 (code, message) of the user with object id `id`.
pub fn no_photo_answer(id: uuid::Uuid) -> (&'static str, &'static str) {
    NO_PHOTO_CODES[(id.as_u128() % NO_PHOTO_CODES.len() as u128) as usize]
}

/// Whether the photo metadata of photo-less user `id` is the documented 1x1 answer with
/// an empty `@odata.mediaEtag` (else a "no photo" 404): half the users, chosen by a bit
/// of the id that [`no_photo_answer`] does not use, so every 404 code meets both.
pub fn blank_photo_metadata(id: uuid::Uuid) -> bool {
    (id.as_u128() >> 2) & 1 == 0
}

/// `GET /users/{id}/photo[/$value]` and `/photos/{size}[/$value]`: metadata or JPEG bytes.
pub(crate) fn photo(
    shared: &Shared,
    caller: &Caller,
    key: &str,
    size: Option<&str>,
    bytes: bool,
) -> GResult {
    require(
        caller,
        &[
            "User.Read.All",
            "User.ReadWrite.All",
            "ProfilePhoto.Read.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
            "User.ReadBasic.All",
        ],
    )?;
    let dir = shared.dir.read().expect("dir lock");
    let i = resolve_user(&dir, key)?;
    let user = &dir.tenant.users[i];
    let not_found = || {
        let (code, message) = no_photo_answer(user.id);
        GraphError::new(StatusCode::NOT_FOUND, code, message)
    };
    let Some(p) = user.photo.as_ref() else {
        // The metadata of a photo never uploaded: Microsoft's profilePhoto-get page shows
        // a 200 with a 1x1 `image/gif` and an empty `@odata.mediaEtag` ("the response when
        // a photo hasn't been uploaded for the user"); others get a "no photo" 404
        // ([`blank_photo_metadata`] picks), so clients meet both.
        if !bytes && size.is_none() && blank_photo_metadata(user.id) {
            return Ok(json_response(&json!({
                "@odata.context": context(shared, &format!("users('{}')/photo/$entity", user.id)),
                "@odata.mediaContentType": "image/gif",
                "@odata.mediaEtag": "",
                "id": "1x1",
                "width": 1,
                "height": 1,
            })));
        }
        return Err(not_found());
    };
    let (w, h) = match size {
        None => (p.width, p.height),
        Some(s) => {
            let (a, b) = s
                .to_ascii_lowercase()
                .split_once('x')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(not_found)?;
            let (a, b): (u32, u32) = (
                a.parse().map_err(|_| not_found())?,
                b.parse().map_err(|_| not_found())?,
            );
            if a != b || !PHOTO_SIZES.contains(&a) || a > p.width.max(p.height) {
                return Err(not_found());
            }
            (a, b)
        }
    };
    let data = STANDARD.decode(p.content_base64.as_bytes()).map_err(|_| {
        GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "Stored photo is not valid base64.",
        )
    })?;
    let etag = p.etag.as_deref().map(str::to_string).unwrap_or_else(|| {
        format!(
            "W/\"{:x}\"",
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data).as_ref()[..8]
                .iter()
                .fold(0u64, |a, b| (a << 8) | u64::from(*b))
        )
    });
    if bytes {
        let mut r = Response::new(Body::from(data));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    Ok(json_response(&json!({
        "@odata.context": context(shared, &format!("users('{}')/photo/$entity", user.id)),
        "@odata.mediaContentType": "image/jpeg",
        "@odata.mediaEtag": etag,
        "id": format!("{w}X{h}"),
        "width": w,
        "height": h,
    })))
}
