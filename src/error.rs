//! The connector's one error type.
//!
//! Every failure, wherever it happens, ends as an [`Error`] whose [`ErrorKind`]
//! maps one-to-one to an exit status of the contract (`shared/docs/CONTRACT.md`):
//!
//! | kind            | exit | when                                                        |
//! |-----------------|------|-------------------------------------------------------------|
//! | `invalid_input` | 2    | envelope, asset or inputs fail their schema or a rule       |
//! | `auth`          | 3    | the token endpoint refused (AADSTS code in `code`)          |
//! | `graph`         | 4    | Graph answered with an error status after retries           |
//! | `network`       | 5    | no answer: connect/TLS failure, timeout, retries exhausted  |
//! | `local`         | 6    | a local file or the state store cannot be read or written   |
//! | `state`         | 7    | the shared state (`--state-url`) cannot be used: bad URL,   |
//! |                 |      | unreachable, refused credentials, a newer schema, no key    |
//! | `internal`      | 1    | a defect of ours                                            |
//!
//! Metadata (HTTP status, service code, request id, JSON-pointer details) is
//! carried through every layer so the final error object tells a playbook what to
//! branch on. Messages are built by us from typed data, never from secrets: no
//! constructor here takes an asset or a token.

use serde::Serialize;
use serde_json::{Value, json};

/// The closed set of failure kinds, one per exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidInput,
    Auth,
    Graph,
    Network,
    /// This machine's files: a state store that cannot be opened, is corrupt, foreign
    /// (a newer schema) or locked past the busy timeout; an output folder that cannot
    /// be written. Not the caller's input, not the service: a person must look at the
    /// named file or folder.
    Local,
    /// The shared state backend asked for with `--state-url` (PostgreSQL) cannot be
    /// used: a URL we cannot read, a server we cannot reach or that refuses us, a
    /// schema from a newer version. Never answered by falling back to local state.
    State,
    Internal,
}

impl ErrorKind {
    /// The process exit status of this kind, as the contract fixes it.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::InvalidInput => 2,
            ErrorKind::Auth => 3,
            ErrorKind::Graph => 4,
            ErrorKind::Network => 5,
            ErrorKind::Local => 6,
            ErrorKind::State => 7,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Auth => "auth",
            ErrorKind::Graph => "graph",
            ErrorKind::Network => "network",
            ErrorKind::Local => "local",
            ErrorKind::State => "state",
            ErrorKind::Internal => "internal",
        }
    }
}

/// One problem with one place of the input, named by a JSON pointer into the
/// envelope (`/inputs/ids/3`, `/asset/client_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub path: String,
    pub message: String,
}

impl Detail {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Detail {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A failure with everything a caller needs to act on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// HTTP status of the answer that failed, when there was one.
    pub status_code: Option<u16>,
    /// The service's own code: Graph's `error.code`, or `AADSTS7000215`.
    pub code: Option<String>,
    /// Graph's `request-id` (or Entra's trace id) for support tickets.
    pub request_id: Option<String>,
    pub details: Vec<Detail>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status_code: None,
            code: None,
            request_id: None,
            details: Vec::new(),
        }
    }

    /// Bad input at one place: `path` is a JSON pointer into the envelope.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        let detail = Detail::new(path, message);
        Error::invalid_details(vec![detail])
    }

    /// Bad input at several places; the message summarises the first.
    pub fn invalid_details(details: Vec<Detail>) -> Self {
        let message = summary(&details);
        Error {
            details,
            ..Error::new(ErrorKind::InvalidInput, message)
        }
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Auth, message)
    }

    pub fn graph(status: u16, message: impl Into<String>) -> Self {
        Error {
            status_code: Some(status),
            ..Error::new(ErrorKind::Graph, message)
        }
    }

    pub fn network(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Network, message)
    }

    /// A local file or the state store failed; `message` names the file or folder.
    pub fn local(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Local, message)
    }

    /// The shared state backend failed; `message` names it without its password.
    pub fn state(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::State, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status_code = Some(status);
        self
    }

    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Place an error whose pointers are relative to a part of the envelope under
    /// that part: every detail path gets `prefix` (`/tenant_id` under `/asset` is
    /// `/asset/tenant_id`), and so does the message when it is the summary that
    /// names the first pointer. Lower layers point relative to what they were
    /// given; the caller that knows where that came from calls this.
    pub fn under(mut self, prefix: &str) -> Self {
        let message_names_pointer =
            self.kind == ErrorKind::InvalidInput && self.message == summary(&self.details);
        for d in &mut self.details {
            d.path = format!("{prefix}{}", d.path);
        }
        if message_names_pointer {
            self.message = summary(&self.details);
        }
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// The contract's error object: `{"error": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("kind".into(), json!(self.kind.as_str()));
        body.insert("message".into(), json!(self.message));
        if let Some(s) = self.status_code {
            body.insert("status_code".into(), json!(s));
        }
        if let Some(c) = &self.code {
            body.insert("code".into(), json!(c));
        }
        if let Some(r) = &self.request_id {
            body.insert("request_id".into(), json!(r));
        }
        if !self.details.is_empty() {
            body.insert("details".into(), json!(self.details));
        }
        json!({ "error": body })
    }
}

/// The message of an `invalid_input` error: the first place and how many more.
fn summary(details: &[Detail]) -> String {
    match details {
        [] => "invalid input".to_string(),
        [only] => format!(
            "invalid input at {}: {}",
            pointer_or_root(&only.path),
            only.message
        ),
        [first, rest @ ..] => format!(
            "invalid input at {}: {} (and {} more)",
            pointer_or_root(&first.path),
            first.message,
            rest.len()
        ),
    }
}

fn pointer_or_root(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path
    }
}

/// Escape one JSON-pointer reference token (RFC 6901).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_contract_exit_codes() {
        assert_eq!(Error::invalid("/inputs/id", "x").exit_code(), 2);
        assert_eq!(Error::auth("x").exit_code(), 3);
        assert_eq!(Error::graph(404, "x").exit_code(), 4);
        assert_eq!(Error::network("x").exit_code(), 5);
        assert_eq!(Error::local("x").exit_code(), 6);
        assert_eq!(Error::state("x").exit_code(), 7);
        assert_eq!(Error::state("x").to_json()["error"]["kind"], "state");
        assert_eq!(Error::internal("x").exit_code(), 1);
    }

    #[test]
    fn error_object_carries_metadata() {
        let e = Error::graph(404, "not found")
            .with_code("Request_ResourceNotFound")
            .with_request_id("r-1");
        let v = e.to_json();
        assert_eq!(v["error"]["kind"], "graph");
        assert_eq!(v["error"]["status_code"], 404);
        assert_eq!(v["error"]["code"], "Request_ResourceNotFound");
        assert_eq!(v["error"]["request_id"], "r-1");
        assert!(v["error"].get("details").is_none());
    }

    #[test]
    fn under_prefixes_pointers() {
        let e = Error::invalid("/ranges/0/cidrs/1", "bad CIDR").under("/inputs");
        assert_eq!(e.details[0].path, "/inputs/ranges/0/cidrs/1");
        assert!(e.message.contains("/inputs/ranges/0/cidrs/1"));
    }

    #[test]
    fn under_gives_the_same_error_as_an_absolute_pointer() {
        let details = |prefix: &str| {
            vec![
                Detail::new(prefix, "is not an object"),
                Detail::new(format!("{prefix}/id"), "is required"),
            ]
        };
        let placed = Error::invalid_details(details("")).under("/inputs");
        let direct = Error::invalid_details(details("/inputs"));
        assert_eq!(placed.to_json(), direct.to_json());
        assert_eq!(
            Error::invalid("", "x").under("/asset").message,
            "invalid input at /asset: x"
        );
    }

    #[test]
    fn under_keeps_a_message_of_its_own() {
        let mut e = Error::invalid("/id", "x");
        e.message = "the id is refused".to_string();
        let e = e.under("/inputs");
        assert_eq!(e.message, "the id is refused");
        assert_eq!(e.details[0].path, "/inputs/id");
    }
}
