//! A scripted HTTP server on 127.0.0.1 for the few tests the emulator cannot
//! serve. Each test scripts its answers with one closure; every request is
//! logged (with its raw headers) so tests prove what was sent.
//!
//! Why this is not the emulator: the project's tests talk to the built-in
//! emulator (`support/emulator.rs`), and this fake is kept only for what a faithful
//! tenant never does by design:
//! - play an HTTP proxy, receiving absolute-form requests for another host
//!   and their `Proxy-Authorization` header (`graph/auth.rs`);
//! - answer with an `@odata.nextLink` that points at a foreign host, and be
//!   that foreign host, to prove a token never goes there (`graph/http.rs`);
//! - answer with a body far larger than Graph ever sends, streamed without a
//!   `Content-Length` ([`padded_reply`]), to prove it is not read in full.
//!
//! Anything else belongs in the emulator; extend it there, with a test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as they arrived on the wire.
    pub uri: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Seen {
    pub fn is_token(&self) -> bool {
        self.uri.ends_with("/oauth2/v2.0/token")
    }
    /// The form fields of a token request.
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
    pub fn bearer(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
    }
}

/// Status, headers, body.
pub type Reply = (u16, Vec<(&'static str, String)>, String);

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

pub struct Fake {
    pub base: String,
    pub log: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// Start a server; `handler(request, n)` answers, `n` counting earlier requests of
    /// the same kind (token requests and Graph requests are counted apart).
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let server_log = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(move |req: Request| {
                    let log = server_log.clone();
                    let handler = handler.clone();
                    async move { answer(req, &log, &*handler).await }
                });
                axum::serve(listener, app).await.unwrap();
            });
        });
        Fake { base, log }
    }

    /// A `client_credentials` asset whose Graph and login URLs are this server.
    pub fn asset(&self, typ: &str) -> Value {
        assert_eq!(typ, "client_credentials", "the fake serves app-only assets");
        json!({
            "type": typ, "url": self.base, "login_url": format!("{}/login", self.base),
            "tenant_id": "contoso", "client_id": "app-1", "client_secret": SECRET,
            "timeout_seconds": 5, "max_attempts": 4, "max_retry_seconds": 10,
        })
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
    pub fn tokens(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_token).collect()
    }
    pub fn graph(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| !s.is_token()).collect()
    }
}

async fn answer(req: Request, log: &Mutex<Vec<Seen>>, handler: &Handler) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let n = {
        let mut log = log.lock().unwrap();
        let n = log
            .iter()
            .filter(|s| s.is_token() == seen.is_token())
            .count();
        log.push(seen.clone());
        n
    };
    let (status, headers, body) = handler(&seen, n);
    let mut response = Response::builder().status(status);
    let mut padding = 0usize;
    for (k, v) in headers {
        if k == PAD_HEADER {
            padding = v.parse().unwrap();
            continue;
        }
        response = response.header(k, v);
    }
    if padding == 0 {
        return response.body(Body::from(body)).unwrap();
    }
    // The body, then `padding` spaces in 1 MiB chunks made as they are sent, chunked.
    const CHUNK: usize = 1 << 20;
    let spaces = bytes::Bytes::from(vec![b' '; CHUNK]);
    let chunks = (0..padding.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(padding - i * CHUNK);
        Ok::<_, std::io::Error>(spaces.slice(..len))
    });
    let stream =
        futures_util::stream::iter(std::iter::once(Ok(bytes::Bytes::from(body))).chain(chunks));
    response.body(Body::from_stream(stream)).unwrap()
}

/// Not sent: tells [`answer`] to stream that many spaces after the body.
const PAD_HEADER: &str = "x-fake-stream-padding";

/// `reply` with `padding` spaces streamed after its body, with no `Content-Length`.
pub fn padded_reply(reply: Reply, padding: usize) -> Reply {
    let (status, mut headers, body) = reply;
    headers.push((PAD_HEADER, padding.to_string()));
    (status, headers, body)
}

pub const SECRET: &str = "s3cr3t-VALUE-do-not-print";
pub const USER_ID: &str = "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e";

/// An access token shaped like Entra's (a JWT whose claims we choose).
pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An app token numbered `n`, with Graph roles.
pub fn app_token(n: usize) -> String {
    jwt(json!({"roles": ["Presence.Read.All", "User.Read.All"], "n": n, "tag": "AT-do-not-print"}))
}

pub fn json_reply(status: u16, body: Value) -> Reply {
    (
        status,
        vec![("content-type", "application/json".to_string())],
        body.to_string(),
    )
}

/// A client-credentials token answer.
pub fn token_ok(access: &str) -> Reply {
    json_reply(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599,
            "ext_expires_in": 3599, "access_token": access}),
    )
}

/// Token requests get tokens numbered 0, 1, ...; anything else is a presence.
pub fn simple(seen: &Seen, n: usize) -> Reply {
    if seen.is_token() {
        token_ok(&app_token(n))
    } else {
        presence(USER_ID)
    }
}

pub fn presence(id: &str) -> Reply {
    let (s, mut h, b) = json_reply(
        200,
        json!({"id": id, "availability": "Available", "activity": "Available"}),
    );
    h.push(("request-id", "req-ok".to_string()));
    h.push(("x-ms-throttle-limit-percentage", "0.4".to_string()));
    (s, h, b)
}

/// Every secret a test planted, plus every access token the server issued.
pub fn assert_no_secrets(fake: &Fake, text: &str) {
    for secret in [SECRET, "do-not-print"] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
    // Issued tokens appear in the log as responses we cannot see; they carry the marker
    // in base64, so check the base64 of the marker's claim too.
    assert!(
        !text.contains(&URL_SAFE_NO_PAD.encode(r#"{"roles""#)[..8]),
        "an access token leaked: {text}"
    );
    for s in fake.seen() {
        if let Some(b) = s.bearer() {
            assert!(!text.contains(b), "an access token leaked: {text}");
        }
        for (k, v) in s.form() {
            if matches!(
                k.as_str(),
                "client_secret" | "password" | "refresh_token" | "client_assertion"
            ) {
                assert!(!text.contains(&v), "the {k} leaked: {text}");
            }
        }
    }
}
