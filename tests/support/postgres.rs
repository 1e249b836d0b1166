//! A real PostgreSQL server for the shared-state tests (issue 17), never a mock.
//!
//! `MSGRAPH_TEST_POSTGRES_URL` names a running server when set (`scripts/test` and
//! `.ci/run` start one with `scripts/postgres`); otherwise the first test that asks
//! starts one with `scripts/postgres start --until-pid <this binary>`, which stops it
//! when the test binary exits. Each test gets a database of its own ([`database`]).
//!
//! Without PostgreSQL a test fails under CI (`CI=true`) and is skipped, saying so on
//! stderr, elsewhere.

use std::process::Command;
use std::sync::OnceLock;

/// A state key (`MSGRAPH_CONNECTOR_STATE_KEY`, base64 of 32 bytes) for the runs that
/// share a PostgreSQL state: its token cache is sealed under it.
pub const STATE_KEY: &str = "bXNncmFwaC1jb25uZWN0b3IgdGVzdCBzdGF0ZSBrZXk=";

/// The server's URL (database `postgres`), or `None` when there is none and this is not CI.
pub fn server() -> Option<&'static str> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("MSGRAPH_TEST_POSTGRES_URL")
            && !url.is_empty()
        {
            return Ok(url);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres");
        let out = Command::new("bash")
            .arg(script)
            .args(["start", "--until-pid", &std::process::id().to_string()])
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{script} start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .next()
            .map(str::to_string)
            .ok_or_else(|| "scripts/postgres printed no URL".to_string())
    });
    match server {
        Ok(url) => Some(url),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is required under CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: no PostgreSQL for this test ({why})");
            None
        }
    }
}

/// A new, empty database on the server: its URL.
pub fn database() -> Option<String> {
    let server = server()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .expect("the test server accepts us");
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        drop(client);
        let _ = conn.await;
    });
    Some(with_database(server, &name))
}

/// `url` naming database `name` instead.
pub fn with_database(url: &str, name: &str) -> String {
    let (head, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{head}/{name}")
}

/// Run `sql` on the database at `url`; the rows' first columns as text.
pub fn query(url: &str, sql: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let conn = tokio::spawn(conn);
        let rows = client.simple_query(sql).await.expect(sql);
        drop(client);
        let _ = conn.await;
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect()
    })
}
