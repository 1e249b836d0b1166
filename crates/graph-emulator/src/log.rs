//! The request log: every request the emulator saw, for tests to assert on.
//!
//! Never holds a bearer token or secret: only whether an `Authorization`
//! header was present, and for token requests what was asked for and how the
//! client authenticated (never the secret, password, refresh token or signature).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One request as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// Real time the request arrived (RFC 3339).
    pub time: String,
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Route family (`token`, `presence`, `users`, `memberof`, `photo`, `signins`, `organization`, `unknown`).
    pub family: String,
    /// Answer status; 0 when the connection was dropped on purpose.
    pub status: u16,
    /// An `Authorization` header was sent (its value is never logged).
    pub authorization: bool,
    pub consistency_level: Option<String>,
    pub client_request_id: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The `Retry-Attempt` header (Microsoft's SDKs number their retries with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_attempt: Option<String>,
    /// Emulator request id (`request-id` header of the answer).
    pub request_id: String,
    /// Injected fault (`429`, `drop`, `slow:2000ms`, `truncate`, `throttled`), if any.
    pub fault: Option<String>,
    /// Server time spent after the request body arrived, microseconds (without injected delays).
    pub micros: u64,
    /// Token requests the emulator read (not those cut short by a fault): what was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenRequest>,
    /// An item of a JSON batch: the `request-id` of the `$batch` request that carried it
    /// (items are logged after their batch's own line; `None` for a request on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

/// The credential-free part of a token request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// The `username` of a password grant.
    pub username: Option<String>,
    /// Every client credential presented, comma-separated: `private_key_jwt`,
    /// `client_secret_post`, `client_secret_basic`; `none` when there was none.
    pub client_auth: String,
    /// JOSE header of the `client_assertion` (its signature is not kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion_header: Option<serde_json::Value>,
    /// Claims of the `client_assertion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion_claims: Option<serde_json::Value>,
    /// Which refresh token a `refresh_token` grant presented, by issue order (1 is
    /// the first the emulator issued), never the token: tests prove with it that a
    /// client redeems the newest one it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_serial: Option<u64>,
}

/// Cloneable handle on the in-process request log.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    entries: Vec<LogEntry>,
    next_seq: u64,
    file: Option<std::fs::File>,
}

impl RequestLog {
    pub(crate) fn with_file(path: Option<&Path>) -> std::io::Result<RequestLog> {
        let log = RequestLog::default();
        if let Some(path) = path {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            log.inner.lock().expect("log lock").file = Some(file);
        }
        Ok(log)
    }

    pub(crate) fn push(&self, mut entry: LogEntry) {
        let mut inner = self.inner.lock().expect("log lock");
        inner.next_seq += 1;
        entry.seq = inner.next_seq;
        if let Some(file) = inner.file.as_mut()
            && let Ok(mut line) = serde_json::to_vec(&entry)
        {
            line.push(b'\n');
            if let Err(e) = file.write_all(&line) {
                tracing::warn!("emulator request log file: {e}");
            }
        }
        inner.entries.push(entry);
    }

    /// A copy of all entries so far, oldest first.
    pub fn snapshot(&self) -> Vec<LogEntry> {
        self.inner.lock().expect("log lock").entries.clone()
    }

    /// Entries of one family (`"token"`, `"signins"`, ...).
    pub fn family(&self, family: &str) -> Vec<LogEntry> {
        self.inner
            .lock()
            .expect("log lock")
            .entries
            .iter()
            .filter(|e| e.family == family)
            .cloned()
            .collect()
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("log lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget the in-process entries (the file, if any, keeps them).
    pub fn clear(&self) {
        self.inner.lock().expect("log lock").entries.clear();
    }
}
