//! Where state shared by processes lives: the embedded SQLite files in `--state-dir`
//! (the default, no set-up) or one PostgreSQL database named by `--state-url` /
//! `MSGRAPH_CONNECTOR_STATE_URL` (`postgres://...`), for workers on several machines.
//!
//! [`Backend`] is the handle a run carries; it is chosen once, from the settings, by
//! [`Backend::choose`]. A `postgres://` URL is used as given or the run fails with kind
//! `state` (exit 7): a URL we cannot read, a server we cannot reach, refused
//! credentials, a schema from a newer version. There is no silent fallback to local
//! state when a shared one was asked for. The URL's password never appears in output:
//! every message names the database by [`StateUrl::shown`], the URL with its password
//! replaced, and the password is registered with [`crate::redact`].
//!
//! What each backend holds so far: the pacer's budgets ([`budget`]), and in PostgreSQL
//! the token cache (`msgraph_token_cache`, sealed under the state key by
//! `crate::auth::shared_cache`; the embedded backend's is `<state-dir>/tokens/`), the
//! named values and cursor leases of `crate::state` (`msgraph_state`,
//! `msgraph_cursor_lease`; embedded: `state.sqlite3`) and the IP presence store
//! ([`presence`], `msgraph_presence_*` per scope, on a connection of its own; the
//! embedded one is `ip_presence::PresenceStore`).
//!
//! This module sits below `graph/` (the pacer reserves here before every request) and
//! knows nothing of Graph: a budget is a key, a request count and a window.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};

pub mod budget;
pub mod postgres;
pub mod presence;

pub use postgres::Postgres;
pub use presence::SharedPresenceStore;

/// What `--state-url` asked for.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum StateUrl {
    /// Absent, empty or `sqlite:`: the embedded store in `--state-dir`.
    #[default]
    Embedded,
    /// A `postgres://` or `postgresql://` URL.
    Postgres { url: String, shown: String },
}

impl std::fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateUrl::Embedded => f.write_str("Embedded"),
            StateUrl::Postgres { shown, .. } => write!(f, "Postgres({shown})"),
        }
    }
}

impl StateUrl {
    /// Read `--state-url`. Anything but SQLite or PostgreSQL is refused (kind `state`),
    /// naming the scheme, never the rest of the value.
    pub fn parse(value: Option<&str>) -> Result<StateUrl> {
        let value = value.map(str::trim).unwrap_or("");
        if value.is_empty() || value == "sqlite:" || value == "sqlite" {
            return Ok(StateUrl::Embedded);
        }
        let scheme = value.split_once(':').map(|(s, _)| s).unwrap_or("");
        if !matches!(scheme, "postgres" | "postgresql") {
            let scheme = if scheme.is_empty() || scheme.len() > 20 {
                "no scheme".to_string()
            } else {
                format!("scheme {scheme:?}")
            };
            return Err(Error::state(format!(
                "--state-url has {scheme}: give postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE \
                 for a shared state, or sqlite: (or nothing) for the embedded store in --state-dir"
            )));
        }
        let (shown, secrets) = scrub_url(value);
        for s in &secrets {
            crate::redact::remember(s);
        }
        Ok(StateUrl::Postgres {
            url: value.to_string(),
            shown,
        })
    }

    /// The URL as messages may show it: its password (userinfo or `password=` query
    /// parameter) replaced by `[REDACTED]`.
    pub fn shown(&self) -> &str {
        match self {
            StateUrl::Embedded => "the embedded store",
            StateUrl::Postgres { shown, .. } => shown,
        }
    }
}

/// `url` with its passwords replaced, and the passwords found (to be scrubbed from any
/// text a server or a library sends back). Works on the text, so a URL that `url` cannot
/// parse is scrubbed too.
pub fn scrub_url(url: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let mut out = url.to_string();
    // userinfo: scheme://user:password@host
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            let password = out[colon + 1..at].to_string();
            if !password.is_empty() {
                secrets.push(percent_decode(&password));
                secrets.push(password);
                out.replace_range(colon + 1..at, crate::redact::REDACTED);
            }
        }
    }
    // query: ?password=... (libpq's URI form allows any connection parameter there)
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let parts: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("password") && !v.is_empty() => {
                    secrets.push(percent_decode(v));
                    secrets.push(v.to_string());
                    format!("{k}={}", crate::redact::REDACTED)
                }
                _ => p.to_string(),
            })
            .collect();
        out = format!("{head}{}", parts.join("&"));
    }
    (out, secrets)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The shared state this process was told to use (`--state-url`), as messages show it;
/// set once by the command line.
static SHARED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Remember that this process runs with a shared state (`url`, a PostgreSQL one).
pub fn declare(url: &StateUrl) {
    if let StateUrl::Postgres { shown, .. } = url {
        let _ = SHARED.set(shown.clone());
    }
}

/// Refuse to keep `what` in the local state dir when a shared state was asked for and
/// this version does not keep `what` there yet: never a silent fallback to local state.
pub fn refuse_local(what: &str) -> Result<()> {
    match SHARED.get() {
        None => Ok(()),
        Some(shown) => Err(Error::state(format!(
            "{what} is not kept in the shared state {shown} by this version (the pacer's \
             budgets, the token cache, the sign-in cursors and their leases are); run this \
             action without --state-url / MSGRAPH_CONNECTOR_STATE_URL to keep it in --state-dir"
        ))),
    }
}

/// The state a run shares with other processes.
#[derive(Clone)]
pub enum Backend {
    /// SQLite files in this state dir (this machine's processes).
    Embedded(Arc<budget::SqliteBudgets>),
    /// One PostgreSQL database (every machine's processes).
    Postgres(Arc<Postgres>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Embedded(b) => write!(f, "Embedded({})", b.path().display()),
            Backend::Postgres(p) => write!(f, "Postgres({})", p.shown()),
        }
    }
}

impl Backend {
    /// The backend of a run: PostgreSQL when `--state-url` names one, else the state
    /// dir's SQLite files, else none (no state dir: each process paces itself).
    pub fn choose(url: &StateUrl, state_dir: Option<&PathBuf>) -> Option<Backend> {
        match url {
            StateUrl::Postgres { url, shown } => Some(Backend::Postgres(Arc::new(Postgres::new(
                url.clone(),
                shown.clone(),
            )))),
            StateUrl::Embedded => state_dir
                .map(|dir| Backend::Embedded(Arc::new(budget::SqliteBudgets::new(dir.clone())))),
        }
    }

    /// Connect (and migrate) now, so that a bad configuration fails before any request
    /// leaves the machine. The embedded store opens on first use.
    pub async fn ready(&self) -> Result<()> {
        match self {
            Backend::Embedded(_) => Ok(()),
            Backend::Postgres(p) => p.client().await.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed_from_userinfo_and_query() {
        let (shown, secrets) = scrub_url("postgres://app:s3cr%40t@db.example:5432/state");
        assert_eq!(shown, "postgres://app:[REDACTED]@db.example:5432/state");
        assert!(secrets.contains(&"s3cr@t".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"s3cr%40t".to_string()), "{secrets:?}");
        let (shown, secrets) =
            scrub_url("postgresql://db.example/state?user=app&password=hunter22&sslmode=require");
        assert_eq!(
            shown,
            "postgresql://db.example/state?user=app&password=[REDACTED]&sslmode=require"
        );
        assert_eq!(secrets[0], "hunter22");
        // A user without a password, an @ in the path: nothing to hide, nothing changed.
        let plain = "postgres://app@db.example/st@te";
        assert_eq!(scrub_url(plain).0, plain);
    }

    #[test]
    fn the_scheme_chooses_the_backend() {
        assert_eq!(StateUrl::parse(None).unwrap(), StateUrl::Embedded);
        assert_eq!(
            StateUrl::parse(Some("sqlite:")).unwrap(),
            StateUrl::Embedded
        );
        let pg = StateUrl::parse(Some("postgres://u:pw12345@h/d")).unwrap();
        assert_eq!(pg.shown(), "postgres://u:[REDACTED]@h/d");
        assert!(!format!("{pg:?}").contains("pw12345"));
        let e = StateUrl::parse(Some("mysql://u:topsecret@h/d")).unwrap_err();
        assert_eq!(e.exit_code(), 7);
        assert!(e.message.contains("\"mysql\""), "{}", e.message);
        assert!(!e.message.contains("topsecret"), "{}", e.message);
    }
}
