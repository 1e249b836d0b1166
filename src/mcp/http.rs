//! MCP streamable HTTP on loopback, behind a bearer token.
//!
//! The SDK's `StreamableHttpService` speaks the transport (POST for messages,
//! SSE for streamed answers and progress, sessions for handshake-era clients,
//! `Host` checked against loopback names against DNS rebinding); we add what it
//! leaves to the server: the listening socket (loopback only) and the token. The
//! token is 32 random bytes, generated at start and printed once, or read from a
//! file; every request must carry `Authorization: Bearer <token>`, compared in
//! constant time. A request without it gets 401 with `WWW-Authenticate: Bearer`
//! (RFC 6750 section 3, https://www.rfc-editor.org/rfc/rfc6750#section-3) before
//! the MCP layer sees it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::server::ConnectorServer;
use crate::error::{Error, Result};

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// A bearer token: generated, or read from a file (its first line, trimmed).
pub struct BearerToken(SecretString);

impl BearerToken {
    pub fn generate() -> Result<BearerToken> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| Error::internal("the system random generator failed"))?;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok(BearerToken(SecretString::from(text)))
    }

    pub fn from_file(path: &Path) -> Result<BearerToken> {
        let at = "/token_file";
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::invalid(at, format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() || meta.len() > 4096 {
            return Err(Error::invalid(
                at,
                format!("{} is not a regular file of at most 4 KiB", path.display()),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(at, format!("cannot read {}: {e}", path.display())))?;
        let token = text.lines().next().unwrap_or("").trim();
        // Header values are visible ASCII; 16 characters is the least worth guarding with.
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                at,
                format!(
                    "{} must hold a token of at least 16 visible ASCII characters on its first line",
                    path.display()
                ),
            ));
        }
        Ok(BearerToken(SecretString::from(token.to_string())))
    }

    fn accepts(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        aws_lc_rs::constant_time::verify_slices_are_equal(
            given.trim().as_bytes(),
            self.0.expose_secret().as_bytes(),
        )
        .is_ok()
    }
}

/// Serve until Ctrl-C (or `stop`); prints `{"url", "token"?}` once on stdout when listening.
pub async fn serve(
    listen: SocketAddr,
    token: BearerToken,
    print_token: bool,
    server: ConnectorServer,
    max_body: usize,
    stop: CancellationToken,
) -> Result<()> {
    if !listen.ip().is_loopback() {
        return Err(Error::invalid(
            "/listen",
            format!(
                "{listen} is not a loopback address: the MCP HTTP transport serves this machine only (127.0.0.1 or [::1])"
            ),
        ));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::invalid("/listen", format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("no local address: {e}")))?;
    let config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(max_body)
        .with_cancellation_token(stop.child_token());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let token = Arc::new(token);
    let url = format!("http://{bound}{MCP_PATH}");
    let mut line = json!({ "url": url });
    if print_token {
        line["token"] = json!(token.0.expose_secret());
    }
    let app = axum::Router::new().nest_service(MCP_PATH, service).layer(
        axum::middleware::from_fn_with_state(token.clone(), require_token),
    );
    crate::runner::print_json(&line);
    eprintln!("msgraph-connector: MCP over streamable HTTP at {url} (Ctrl-C stops it)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|e| Error::internal(format!("the HTTP server stopped: {e}")))
}

async fn require_token(
    State(token): State<Arc<BearerToken>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token.accepts(given) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required: Authorization: Bearer <the token printed at start>\n",
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_checked_exactly() {
        let a = BearerToken::generate().unwrap();
        let b = BearerToken::generate().unwrap();
        assert_ne!(a.0.expose_secret(), b.0.expose_secret());
        let good = format!("Bearer {}", a.0.expose_secret());
        assert!(a.accepts(Some(&good)));
        assert!(!a.accepts(Some(&format!("Bearer {}", b.0.expose_secret()))));
        assert!(!a.accepts(Some(a.0.expose_secret())));
        assert!(!a.accepts(None));
    }

    #[test]
    fn a_short_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        let e = BearerToken::from_file(&path).err().unwrap();
        assert_eq!(e.details[0].path, "/token_file");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert!(BearerToken::from_file(&path).is_ok());
    }
}
