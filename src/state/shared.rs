//! The state database's job in the shared PostgreSQL state (`--state-url`): named values
//! and cursor leases in `msgraph_state` and `msgraph_cursor_lease`, each row under a
//! scope, the tenant's token URL and the app's client id ([`scope_of`]), so one database
//! serves many tenants and apps.
//!
//! The statements mirror `state.sqlite3`'s, with two differences that matter across
//! machines:
//! - lease times are the **server's** clock (`clock_timestamp()`), never a worker's: two
//!   engines whose clocks disagree by a minute still agree on when a lease runs out;
//! - a value is written with `synchronous_commit` on for its transaction (the session
//!   turns it off for the pacer's reservations, which are worth nothing after a crash; a
//!   cursor is not).
//!
//! Each call is one statement on the process's one connection: a lease is taken by one
//! upsert whose `WHERE` only replaces an expired row or the caller's own, so two workers
//! cannot both win (the row lock of `ON CONFLICT DO UPDATE` orders them).

use std::sync::Arc;
use std::time::Duration;

use super::holder::{Acquired, Holder, now_ms};
use crate::asset::Asset;
use crate::backend::Postgres;
use crate::error::Result;

/// The scope of a tenant and app in the shared state: its token URL (which names the
/// tenant) and its client id.
pub fn scope_of(asset: &Asset) -> String {
    format!("{} {}", asset.token_url.as_str(), asset.client_id)
}

/// Named values and leases of one scope in PostgreSQL.
#[derive(Clone)]
pub struct SharedState {
    pg: Arc<Postgres>,
    scope: String,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("database", &self.pg.shown())
            .field("scope", &self.scope)
            .finish()
    }
}

/// A lease's length in whole milliseconds, for the server's interval arithmetic.
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl SharedState {
    pub fn new(pg: Arc<Postgres>, scope: String) -> Self {
        SharedState { pg, scope }
    }

    /// The database.
    pub fn pg(&self) -> &Arc<Postgres> {
        &self.pg
    }

    /// The tenant and app whose values these are.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Where the values are, for messages (the URL without its password, and the scope).
    pub fn describe(&self) -> String {
        format!(
            "the shared state {} (scope {})",
            self.pg.shown(),
            self.scope
        )
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let client = self.pg.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM msgraph_state WHERE scope = $1 AND key = $2",
                &[&self.scope, &key],
            )
            .await
            .map_err(|e| self.pg.failed("read a kept value", &e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Keep `value` under `key`: one statement, durable when it returns.
    pub async fn put(&self, key: &str, value: &str) -> Result<()> {
        let client = self.pg.client().await?;
        client
            .execute(
                "WITH durable AS (SELECT set_config('synchronous_commit', 'on', true))
                 INSERT INTO msgraph_state (scope, key, value, updated_at)
                 SELECT $1, $2, $3, clock_timestamp() FROM durable
                 ON CONFLICT (scope, key) DO UPDATE
                     SET value = excluded.value, updated_at = excluded.updated_at",
                &[&self.scope, &key, &value],
            )
            .await
            .map_err(|e| self.pg.failed("keep a value", &e))?;
        Ok(())
    }

    pub async fn try_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<Acquired> {
        let client = self.pg.client().await?;
        let failed = |e| self.pg.failed("take the cursor lease", &e);
        let taken = client
            .execute(
                "INSERT INTO msgraph_cursor_lease (scope, key, holder, acquired_at, expires_at)
                 VALUES ($1, $2, $3, clock_timestamp(),
                         clock_timestamp() + $4::BIGINT * interval '1 millisecond')
                 ON CONFLICT (scope, key) DO UPDATE SET
                     holder = excluded.holder,
                     acquired_at = excluded.acquired_at,
                     expires_at = excluded.expires_at
                 WHERE msgraph_cursor_lease.expires_at <= clock_timestamp()
                    OR msgraph_cursor_lease.holder = excluded.holder",
                &[&self.scope, &key, &holder, &ttl_ms(ttl)],
            )
            .await
            .map_err(failed)?;
        if taken == 1 {
            return Ok(Acquired::Taken);
        }
        let held = client
            .query_opt(
                "SELECT holder, (extract(epoch FROM expires_at) * 1000)::BIGINT
                 FROM msgraph_cursor_lease WHERE scope = $1 AND key = $2",
                &[&self.scope, &key],
            )
            .await
            .map_err(failed)?;
        Ok(Acquired::HeldBy(match held {
            Some(r) => Holder {
                holder: r.get(0),
                expires_at_ms: r.get(1),
            },
            // Released between the two statements: try again next poll.
            None => Holder {
                holder: "another run".into(),
                expires_at_ms: now_ms(),
            },
        }))
    }

    pub async fn renew(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let client = self.pg.client().await?;
        let n = client
            .execute(
                "UPDATE msgraph_cursor_lease
                 SET expires_at = clock_timestamp() + $4::BIGINT * interval '1 millisecond'
                 WHERE scope = $1 AND key = $2 AND holder = $3",
                &[&self.scope, &key, &holder, &ttl_ms(ttl)],
            )
            .await
            .map_err(|e| self.pg.failed("renew the cursor lease", &e))?;
        Ok(n == 1)
    }

    pub async fn release(&self, key: &str, holder: &str) -> Result<()> {
        let client = self.pg.client().await?;
        client
            .execute(
                "DELETE FROM msgraph_cursor_lease WHERE scope = $1 AND key = $2 AND holder = $3",
                &[&self.scope, &key, &holder],
            )
            .await
            .map_err(|e| self.pg.failed("release the cursor lease", &e))?;
        Ok(())
    }

    pub async fn take_over(
        &self,
        key: &str,
        dead: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let client = self.pg.client().await?;
        let n = client
            .execute(
                "UPDATE msgraph_cursor_lease SET holder = $4, acquired_at = clock_timestamp(),
                     expires_at = clock_timestamp() + $5::BIGINT * interval '1 millisecond'
                 WHERE scope = $1 AND key = $2 AND holder = $3",
                &[&self.scope, &key, &dead, &holder, &ttl_ms(ttl)],
            )
            .await
            .map_err(|e| self.pg.failed("take over the cursor lease", &e))?;
        Ok(n == 1)
    }
}
