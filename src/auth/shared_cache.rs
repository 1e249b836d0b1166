//! The token cache in the shared state (PostgreSQL, `--state-url`), so that workers on
//! every machine ask Entra for one token per app and tenant, not one per state dir.
//!
//! One row per (token URL, client id, scope, user) — the file cache's key — in
//! `msgraph_token_cache`, holding the credential fingerprint and the entry (the file
//! cache's JSON) sealed with AES-256-GCM: a fresh random 96-bit nonce per write, and
//! the row's key and fingerprint as associated data, so a row copied onto another key
//! or another credential does not open. The key is the state key
//! ([`StateKey`], `MSGRAPH_CONNECTOR_STATE_KEY`, base64 of 32 bytes), given to every
//! worker by the platform and never stored in the database: whoever can read the
//! database without it reads no token. The sealing key and the fingerprint key are
//! derived from it by HMAC-SHA256 under fixed labels, so every worker fingerprints a
//! credential the same way (the file cache's fingerprint key is per state dir).
//!
//! A row that does not open (another state key wrote it) is a miss, logged without
//! secrets; the new token replaces it.
//!
//! Two workers refreshing together: [`SharedSlot::lock`] takes a session-level advisory
//! lock on the row's key (`pg_try_advisory_lock`, polled like the file cache's lock
//! file) around "load, and if stale ask Entra and store", so one token request happens
//! and a rotated refresh token is kept once. Not a transaction-level lock: the process
//! has one connection, shared with the pacer, and a transaction held open across the
//! token request would take every pacer reservation of this process into it (holding
//! the budget's row lock against every other worker until the token came back). A
//! session lock ends with the connection, so a killed worker frees it (PostgreSQL's
//! "Advisory Lock Functions": session-level locks are held until released or the
//! session ends, https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS
//! ; "Advisory Locks", https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS).
//!
//! Random 96-bit nonces: GCM's security needs a nonce never repeated under one key;
//! NIST SP 800-38D §8.3 bounds random ones to 2^32 invocations per key, far beyond one
//! write per token an hour (https://csrc.nist.gov/pubs/sp/800/38/d/final).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{digest, hmac};
use base64::Engine;

use super::cache::{CachedToken, CredentialKey, decode_entry, encode_entry};
use crate::backend::Postgres;
use crate::error::{Error, Result};

/// The environment variable holding the state key.
pub const STATE_KEY_ENV: &str = "MSGRAPH_CONNECTOR_STATE_KEY";

/// Labels under which the state key's two uses are derived.
const SEALING_LABEL: &[u8] = b"msgraph-connector token cache AES-256-GCM v1";
const FINGERPRINT_LABEL: &[u8] = b"msgraph-connector credential fingerprint v1";

/// The state key: what seals the shared token cache and keys its fingerprints.
pub struct StateKey {
    sealing: Arc<LessSafeKey>,
    fingerprint: Arc<CredentialKey>,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey([redacted])")
    }
}

impl StateKey {
    /// The key from `MSGRAPH_CONNECTOR_STATE_KEY`; kind `state` (exit 7) when it is
    /// missing or not base64 of 32 bytes. The message never quotes the value.
    pub fn from_env(shown: &str) -> Result<StateKey> {
        let value = std::env::var(STATE_KEY_ENV).unwrap_or_default();
        if value.trim().is_empty() {
            return Err(Error::state(format!(
                "the shared state {shown} keeps tokens encrypted, and {STATE_KEY_ENV} is not \
                 set: give every worker the same key, base64 of 32 random bytes (for example \
                 `openssl rand -base64 32`), or run with --no-token-cache"
            )));
        }
        Self::from_base64(value.trim())
    }

    /// The key from its base64 text.
    pub fn from_base64(text: &str) -> Result<StateKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                Error::state(format!(
                    "{STATE_KEY_ENV} is not base64 of 32 bytes (its value is not shown)"
                ))
            })?;
        crate::redact::remember(text);
        let root = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        let derive = |label: &[u8]| hmac::sign(&root, label);
        let sealing = derive(SEALING_LABEL);
        let sealing = UnboundKey::new(&AES_256_GCM, sealing.as_ref())
            .map_err(|_| Error::internal("cannot make the token cache's sealing key"))?;
        Ok(StateKey {
            sealing: Arc::new(LessSafeKey::new(sealing)),
            fingerprint: Arc::new(CredentialKey::from_bytes(
                derive(FINGERPRINT_LABEL).as_ref(),
            )),
        })
    }

    /// The key credentials are fingerprinted under, the same on every worker.
    pub fn fingerprint_key(&self) -> &CredentialKey {
        &self.fingerprint
    }
}

/// One entry of the shared token cache.
pub struct SharedSlot {
    pg: Arc<Postgres>,
    /// token URL, client id, scope, user.
    key: [String; 4],
    credential: String,
    sealing: Arc<LessSafeKey>,
    /// The advisory lock's id: the first 8 bytes of a SHA-256 of the key.
    lock_id: i64,
}

impl std::fmt::Debug for SharedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSlot({})", self.pg.shown())
    }
}

/// The advisory lock of a slot, held until [`SharedSlot::unlock`].
pub struct SharedLock(());

impl SharedSlot {
    pub fn new(pg: Arc<Postgres>, key: [String; 4], credential: String, state: &StateKey) -> Self {
        let text = serde_json::to_string(&key).unwrap_or_default();
        let hash = digest::digest(&digest::SHA256, format!("token cache {text}").as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash.as_ref()[..8]);
        SharedSlot {
            pg,
            key,
            credential,
            sealing: state.sealing.clone(),
            lock_id: i64::from_be_bytes(id),
        }
    }

    /// The associated data of the row: its key and its credential fingerprint.
    fn aad(&self) -> Vec<u8> {
        let mut aad = b"msgraph-connector token v1\0".to_vec();
        aad.extend(serde_json::to_vec(&(&self.key, &self.credential)).unwrap_or_default());
        aad
    }

    /// Take the entry's lock, waiting up to `wait` for another worker's token request;
    /// `None` when it cannot be had (then we go on without: a second token request
    /// beats no result).
    pub async fn lock(&self, wait: Duration) -> Option<SharedLock> {
        let client = match self.pg.client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("token cache: {}", e.message);
                return None;
            }
        };
        let start = Instant::now();
        loop {
            match client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&self.lock_id])
                .await
            {
                Ok(row) if row.get::<_, bool>(0) => return Some(SharedLock(())),
                Ok(_) if start.elapsed() < wait => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Ok(_) => {
                    tracing::warn!(
                        "token cache: another worker held the lock for {}s; going on without it",
                        wait.as_secs()
                    );
                    return None;
                }
                Err(e) => {
                    tracing::warn!(
                        "token cache: cannot lock: {}",
                        crate::backend::postgres::describe(&e)
                    );
                    return None;
                }
            }
        }
    }

    /// Give the lock back.
    pub async fn unlock(&self, lock: Option<SharedLock>) {
        if lock.is_none() {
            return;
        }
        if let Ok(client) = self.pg.client().await
            && let Err(e) = client
                .execute("SELECT pg_advisory_unlock($1)", &[&self.lock_id])
                .await
        {
            tracing::warn!(
                "token cache: cannot unlock: {}",
                crate::backend::postgres::describe(&e)
            );
        }
    }

    /// The stored token, if its row opens with our key and the same credential
    /// obtained it; anything else is a miss.
    pub async fn load(&self) -> Option<CachedToken> {
        let client = self.pg.client().await.ok()?;
        let [url, id, scope, user] = &self.key;
        let row = match client
            .query_opt(
                "SELECT nonce, sealed FROM msgraph_token_cache
                 WHERE token_url = $1 AND client_id = $2 AND scope = $3 AND user_key = $4",
                &[url, id, scope, user],
            )
            .await
        {
            Ok(row) => row?,
            Err(e) => {
                tracing::warn!(
                    "token cache: cannot read the shared entry: {}",
                    crate::backend::postgres::describe(&e)
                );
                return None;
            }
        };
        self.open(&row.get::<_, Vec<u8>>(0), row.get(1))
    }

    /// The token of a sealed entry, if it opens with our key, for our row and credential.
    fn open(&self, nonce: &[u8], mut sealed: Vec<u8>) -> Option<CachedToken> {
        let opened = Nonce::try_assume_unique_for_key(nonce).ok().and_then(|n| {
            self.sealing
                .open_in_place(n, Aad::from(self.aad()), &mut sealed)
                .ok()
        });
        let Some(plain) = opened else {
            // Another state key, or another credential's row (its fingerprint is in the
            // associated data): either way not ours to use.
            tracing::warn!(
                "token cache: the shared entry does not open with this state key and \
                 credential; asking for a new token"
            );
            return None;
        };
        decode_entry(plain, &self.key, &self.credential)
    }

    /// Replace the row, sealed under a fresh nonce; committed to disk before we go on
    /// (a rotated refresh token must outlive a crash).
    pub async fn store(&self, token: &CachedToken) {
        if let Err(e) = self.try_store(token).await {
            tracing::warn!("token cache: cannot write the shared entry: {}", e.message);
        }
    }

    /// The entry sealed under a fresh nonce: (nonce, ciphertext and tag).
    fn seal(&self, token: &CachedToken) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("no system randomness"))?;
        let mut sealed = encode_entry(&self.key, &self.credential, token)
            .map_err(|e| Error::internal(format!("cannot encode the entry: {e}")))?;
        self.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad()),
                &mut sealed,
            )
            .map_err(|_| Error::internal("cannot seal the entry"))?;
        Ok((nonce, sealed))
    }

    async fn try_store(&self, token: &CachedToken) -> Result<()> {
        let client = self.pg.client().await?;
        let (nonce, sealed) = self.seal(token)?;
        let failed = |e: tokio_postgres::Error| self.pg.failed("keep the token", &e);
        client
            .batch_execute("BEGIN; SET LOCAL synchronous_commit = on;")
            .await
            .map_err(failed)?;
        let [url, id, scope, user] = &self.key;
        let written = client
            .execute(
                "INSERT INTO msgraph_token_cache
                     (token_url, client_id, scope, user_key, credential, nonce, sealed, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                 ON CONFLICT (token_url, client_id, scope, user_key) DO UPDATE SET
                     credential = excluded.credential, nonce = excluded.nonce,
                     sealed = excluded.sealed, updated_at = excluded.updated_at",
                &[url, id, scope, user, &self.credential, &&nonce[..], &sealed],
            )
            .await
            .map_err(failed);
        let end = if written.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = client.batch_execute(end).await.map_err(failed);
        written.and(ended).map(drop)
    }

    /// Forget the entry (after Entra refused its refresh token).
    pub async fn remove(&self) {
        let Ok(client) = self.pg.client().await else {
            return;
        };
        let [url, id, scope, user] = &self.key;
        if let Err(e) = client
            .execute(
                "DELETE FROM msgraph_token_cache
                 WHERE token_url = $1 AND client_id = $2 AND scope = $3 AND user_key = $4",
                &[url, id, scope, user],
            )
            .await
        {
            tracing::warn!(
                "token cache: cannot remove the shared entry: {}",
                crate::backend::postgres::describe(&e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_key_must_be_32_bytes_and_is_never_shown() {
        let e = StateKey::from_base64("c2hvcnQ=").unwrap_err();
        assert_eq!(e.exit_code(), 7);
        assert!(!e.message.contains("c2hvcnQ="), "{}", e.message);
        let text = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let a = StateKey::from_base64(&text).unwrap();
        let b = StateKey::from_base64(&text).unwrap();
        assert!(!format!("{a:?}").contains(&text));
        // Every worker with the key fingerprints alike; another key differently.
        let fp = |k: &StateKey| k.fingerprint_key().fingerprint(&[b"client_secret", b"s"]);
        assert_eq!(fp(&a), fp(&b));
        let other = base64::engine::general_purpose::STANDARD.encode([8u8; 32]);
        assert_ne!(fp(&a), fp(&StateKey::from_base64(&other).unwrap()));
    }

    #[test]
    fn a_sealed_entry_opens_only_for_its_key_row_and_credential() {
        let url = crate::backend::StateUrl::parse(Some("postgres://u@127.0.0.1/d")).unwrap();
        let Some(crate::backend::Backend::Postgres(pg)) =
            crate::backend::Backend::choose(&url, None)
        else {
            panic!("a postgres backend")
        };
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let (key, other) = (
            StateKey::from_base64(&b64(1)).unwrap(),
            StateKey::from_base64(&b64(2)).unwrap(),
        );
        let row = |user: &str| ["t".to_string(), "c".into(), "s".into(), user.to_string()];
        let slot = SharedSlot::new(pg.clone(), row("u"), "fp".into(), &key);
        let token = CachedToken {
            access_token: secrecy::SecretString::from("at-plain-text"),
            obtained_at: 1,
            expires_at: 3601,
            ext_expires_at: None,
            refresh_token: Some(secrecy::SecretString::from("rt-plain-text")),
            scope: None,
        };
        let (nonce, sealed) = slot.seal(&token).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("plain-text") && !text.contains("access_token"));
        let back = slot.open(&nonce, sealed.clone()).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(back.access_token.expose_secret(), "at-plain-text");
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "rt-plain-text");
        // A fresh nonce per write.
        assert_ne!(slot.seal(&token).unwrap().0, nonce);
        // Another key, another row, another credential: nothing opens.
        let wrong = [
            SharedSlot::new(pg.clone(), row("u"), "fp".into(), &other),
            SharedSlot::new(pg.clone(), row("v"), "fp".into(), &key),
            SharedSlot::new(pg.clone(), row("u"), "fp2".into(), &key),
        ];
        for w in wrong {
            assert!(w.open(&nonce, sealed.clone()).is_none());
        }
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(slot.open(&nonce, flipped).is_none());
        assert!(slot.open(&nonce[..8], sealed).is_none());
    }
}
