//! The PostgreSQL backend: one connection per process, made on first use and migrated.
//!
//! One connection, not a pool: a run is one short process whose requests go one after
//! another through the pacer (a reservation is one statement), and `mcp`'s long-lived
//! server serialises them on the same connection, which tokio-postgres pipelines. A pool
//! would hold idle connections per worker process against the server's
//! `max_connections` and add a crate for nothing these processes do.
//!
//! TLS goes through our rustls (the aws-lc-rs provider reqwest already uses) with the
//! platform's roots, by `tokio-postgres-rustls`; `sslmode` in the URL decides as libpq's
//! does for `disable`, `prefer` (the default) and `require`.
//!
//! Schema: `msgraph_schema_version` holds one number; [`MIGRATIONS`] take it up to
//! [`SCHEMA_VERSION`] under a transaction-scoped advisory lock, so workers starting
//! together migrate once. A database whose version is newer than ours is refused.
//! Table names start with `msgraph_` so the database can be shared with others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 4;

/// Migration `n` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // The pacer's budgets (`budget`): per budget a counter, and a ring of the last
    // `requests` start times as one row per place (an array column rewritten whole,
    // 12 KB at 1,500 requests, cost 2 ms a reservation; a row per place 0.5 ms).
    // The function reserves in one round trip; each of its statements sees what the
    // reservations before it committed (a function's statements take fresh snapshots
    // under READ COMMITTED), and the counter's row lock orders them.
    "CREATE TABLE msgraph_pacer_budget (
        key TEXT PRIMARY KEY,
        requests INTEGER NOT NULL,
        window_us BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        blocked_until_us BIGINT NOT NULL
    );
    CREATE TABLE msgraph_pacer_slot (
        key TEXT NOT NULL,
        place INTEGER NOT NULL,
        start_us BIGINT NOT NULL,
        PRIMARY KEY (key, place)
    );
    CREATE FUNCTION msgraph_pacer_reserve(p_key TEXT, p_requests INTEGER, p_window_us BIGINT)
    RETURNS BIGINT LANGUAGE plpgsql AS $$
    DECLARE
        k BIGINT;
        blocked BIGINT;
        previous BIGINT;
        now_us BIGINT;
        slot BIGINT;
        reset INTEGER;
    BEGIN
        FOR attempt IN 1..3 LOOP
            UPDATE msgraph_pacer_budget SET seq = seq + 1
                WHERE key = p_key AND requests = p_requests AND window_us = p_window_us
                RETURNING seq - 1, blocked_until_us INTO k, blocked;
            IF FOUND THEN
                SELECT start_us INTO previous FROM msgraph_pacer_slot
                    WHERE key = p_key AND place = k % p_requests;
                now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
                slot := greatest(now_us, coalesce(previous + p_window_us, now_us), blocked);
                INSERT INTO msgraph_pacer_slot (key, place, start_us)
                    VALUES (p_key, k % p_requests, slot)
                    ON CONFLICT (key, place) DO UPDATE SET start_us = excluded.start_us;
                RETURN slot - now_us;
            END IF;
            -- No budget yet, or one kept for another limit: (re)start it. One made by
            -- another worker meanwhile for the same limit is left alone.
            INSERT INTO msgraph_pacer_budget (key, requests, window_us, seq, blocked_until_us)
                VALUES (p_key, p_requests, p_window_us, 0, 0)
                ON CONFLICT (key) DO UPDATE SET
                    requests = excluded.requests, window_us = excluded.window_us, seq = 0
                WHERE msgraph_pacer_budget.requests <> excluded.requests
                   OR msgraph_pacer_budget.window_us <> excluded.window_us;
            GET DIAGNOSTICS reset = ROW_COUNT;
            IF reset > 0 THEN
                DELETE FROM msgraph_pacer_slot WHERE key = p_key;
            END IF;
        END LOOP;
        RETURN NULL;
    END $$;",
    // The token cache (`auth::shared_cache`): per (token URL, client id, scope, user)
    // the credential's fingerprint and the entry sealed with AES-256-GCM under the
    // state key, which the database never sees.
    "CREATE TABLE msgraph_token_cache (
        token_url TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        user_key TEXT NOT NULL,
        credential TEXT NOT NULL,
        nonce BYTEA NOT NULL,
        sealed BYTEA NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (token_url, client_id, scope, user_key)
    );",
    // Named values (`crate::state`: sign-in cursors, the kept presence configuration,
    // resolved UPNs) and the cursor leases, per scope (a tenant's token URL and client
    // id), so one database serves many tenants. Lease times are the server's clock.
    "CREATE TABLE msgraph_state (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE msgraph_cursor_lease (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        holder TEXT NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (scope, key)
    );",
    // The IP presence store (`presence`): the tables of `presence.sqlite3` with `scope`
    // (one tenant and app) first in every key, and `user` named `upn` (reserved here).
    // Texts compare as bytes (`COLLATE "C"`, as SQLite) and dates are ISO text, as
    // there, so both stores sort and compare alike.
    r#"
    CREATE TABLE msgraph_presence_access_events (
        scope TEXT COLLATE "C" NOT NULL, upn TEXT COLLATE "C" NOT NULL,
        ip TEXT COLLATE "C" NOT NULL, date TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (scope, upn, date, ip));
    CREATE INDEX msgraph_presence_access_events_by_date
        ON msgraph_presence_access_events (scope, date);
    CREATE TABLE msgraph_presence_seen_sign_ins (
        scope TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
        date TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (scope, id));
    CREATE INDEX msgraph_presence_seen_sign_ins_by_date
        ON msgraph_presence_seen_sign_ins (scope, date);
    CREATE TABLE msgraph_presence_observations (
        scope TEXT COLLATE "C" NOT NULL, upn TEXT COLLATE "C" NOT NULL,
        date TEXT COLLATE "C" NOT NULL, at_ms BIGINT NOT NULL,
        range_name TEXT COLLATE "C" NOT NULL, place_kind TEXT COLLATE "C" NOT NULL,
        location TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (scope, upn, date, at_ms, range_name, place_kind, location));
    CREATE INDEX msgraph_presence_observations_by_date
        ON msgraph_presence_observations (scope, date);
    CREATE TABLE msgraph_presence_overrides (
        scope TEXT COLLATE "C" NOT NULL, upn TEXT COLLATE "C" NOT NULL,
        date TEXT COLLATE "C" NOT NULL, at_ms BIGINT NOT NULL,
        set_by TEXT COLLATE "C" NOT NULL, place_kind TEXT COLLATE "C" NOT NULL,
        location TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (scope, upn, date, at_ms, set_by));
    CREATE INDEX msgraph_presence_overrides_by_date
        ON msgraph_presence_overrides (scope, date);
    -- The SQLite table has no key; one here lets the table be replicated (a publication
    -- of deletes needs a replica identity).
    CREATE TABLE msgraph_presence_events (
        scope TEXT COLLATE "C" NOT NULL, seq BIGINT GENERATED ALWAYS AS IDENTITY,
        upn TEXT COLLATE "C" NOT NULL, date TEXT COLLATE "C" NOT NULL,
        at_ms BIGINT NOT NULL, place_kind TEXT COLLATE "C" NOT NULL,
        location TEXT COLLATE "C" NOT NULL, range_name TEXT COLLATE "C",
        source TEXT COLLATE "C" NOT NULL, set_by TEXT COLLATE "C",
        PRIMARY KEY (scope, seq));
    CREATE INDEX msgraph_presence_events_by_user ON msgraph_presence_events (scope, upn, date);
    CREATE INDEX msgraph_presence_events_by_date
        ON msgraph_presence_events (scope, date, place_kind, location);
    CREATE TABLE msgraph_presence_day_status (
        scope TEXT COLLATE "C" NOT NULL, upn TEXT COLLATE "C" NOT NULL,
        date TEXT COLLATE "C" NOT NULL, place_kind TEXT COLLATE "C" NOT NULL,
        location TEXT COLLATE "C" NOT NULL, since_ms BIGINT,
        PRIMARY KEY (scope, upn, date));
    CREATE INDEX msgraph_presence_day_status_by_date
        ON msgraph_presence_day_status (scope, date);
    CREATE TABLE msgraph_presence_discovery (
        scope TEXT COLLATE "C" NOT NULL, block TEXT COLLATE "C" NOT NULL,
        ip TEXT COLLATE "C" NOT NULL, upn TEXT COLLATE "C" NOT NULL,
        events BIGINT NOT NULL, last_date TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (scope, block, ip, upn));
"#,
];

/// An arbitrary constant: the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6d73_6772_6170_6801;

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL state of this process.
pub struct Postgres {
    url: String,
    shown: String,
    client: OnceCell<Client>,
}

impl Postgres {
    pub(super) fn new(url: String, shown: String) -> Self {
        Postgres {
            url,
            shown,
            client: OnceCell::new(),
        }
    }

    /// The URL with its password replaced, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The connection, made and migrated on first use.
    pub async fn client(&self) -> Result<&Client> {
        self.client.get_or_try_init(|| self.connect(false)).await
    }

    /// A connection of its own (same URL, TLS and error wording, migrated), whose
    /// commits wait for the disk, for a store that holds transactions open across
    /// statements (the presence store): the shared [`Self::client`] serves pacer
    /// reservations and token-cache advisory locks, which must never run inside one.
    /// Its driver is spawned on the calling runtime and ends when that runtime does.
    pub async fn own_connection(&self) -> Result<Client> {
        self.connect(true).await
    }

    /// A failure on the connection, naming the database (never its password).
    pub fn failed(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        Error::state(format!(
            "cannot {what} in the shared state {}: {}",
            self.shown,
            describe(e)
        ))
    }

    async fn connect(&self, durable: bool) -> Result<Client> {
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e: tokio_postgres::Error| {
                Error::state(format!(
                    "--state-url {} cannot be read: {}",
                    self.shown,
                    crate::redact::scrub(&e.to_string())
                ))
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("msgraph-connector");
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config()?);
        let (client, connection) = config.connect(tls).await.map_err(|e| {
            Error::state(format!(
                "cannot connect to the shared state {}: {} (no local state is used instead)",
                self.shown,
                describe(&e)
            ))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("the shared state connection ended: {}", describe(&e));
            }
        });
        // Pacer reservations are worth nothing after a crash, so their commits need
        // not wait for the disk; what must last sets `synchronous_commit` back per
        // transaction, or has a `durable` connection of its own.
        if !durable {
            client
                .batch_execute("SET synchronous_commit = off")
                .await
                .map_err(|e| self.failed("configure the session", &e))?;
        }
        self.migrate(&client).await?;
        Ok(client)
    }

    async fn migrate(&self, client: &Client) -> Result<()> {
        let failed = |e: tokio_postgres::Error| self.failed("migrate the schema", &e);
        client
            .batch_execute(
                "BEGIN;
                 SET LOCAL synchronous_commit = on;",
            )
            .await
            .map_err(failed)?;
        let result = async {
            client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(failed)?;
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS msgraph_schema_version (version INTEGER NOT NULL);
                     INSERT INTO msgraph_schema_version (version)
                         SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM msgraph_schema_version);",
                )
                .await
                .map_err(failed)?;
            let mut version: i32 = client
                .query_one("SELECT max(version) FROM msgraph_schema_version", &[])
                .await
                .map_err(failed)?
                .get(0);
            if version > SCHEMA_VERSION {
                return Err(Error::state(format!(
                    "the shared state {} has schema version {version}, newer than this \
                     program's {SCHEMA_VERSION}: upgrade msgraph-connector on this machine \
                     (nothing was changed)",
                    self.shown
                )));
            }
            while version < SCHEMA_VERSION {
                client
                    .batch_execute(MIGRATIONS[version as usize])
                    .await
                    .map_err(failed)?;
                version += 1;
                client
                    .execute(
                        "UPDATE msgraph_schema_version SET version = $1",
                        &[&version],
                    )
                    .await
                    .map_err(failed)?;
            }
            Ok(())
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = client.batch_execute(end).await.map_err(failed);
        result.and(ended)
    }
}

/// A tokio-postgres error with the server's own message when there is one (its
/// `Display` alone says only "db error"), scrubbed of any known secret.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    };
    crate::redact::scrub(&text)
}

/// rustls with the aws-lc-rs provider and the platform's verifier, as reqwest's.
fn tls_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| Error::state(format!("cannot load the TLS roots: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("cannot build the TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}
