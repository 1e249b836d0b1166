//! The on-disk token cache, so that a platform running many short processes
//! asks Entra for a token once an hour, not once a run.
//!
//! One entry per (token URL, client id, scope, user) in `<state_dir>/tokens/`,
//! the file named by a SHA-256 of that key (never of a secret alone), mode 0600
//! in a 0700 directory. Writes go to a temporary file (unguessable name, O_EXCL)
//! that is renamed over the entry, so a reader sees the old entry or the new
//! one, never half of one.
//! A lock file per entry (`File::try_lock`) serialises processes that would
//! otherwise all request a token at the same moment, and keeps a rotated
//! refresh token from being lost between two processes.
//!
//! Every entry is bound to the credential that obtained it: it keeps an
//! HMAC-SHA256 of that credential (client secret, password, certificate and
//! key, or the asset's refresh token) under a random key of this state dir
//! ([`CredentialKey`], `tokens/fingerprint.key`, 0600), and [`CacheSlot::load`]
//! answers nothing unless the run's credential gives the same fingerprint. So a
//! revoked or wrong secret is sent to Entra and refused there, instead of being
//! served a token someone else's secret obtained. The key makes the fingerprint
//! useless for guessing a low-entropy password offline from the entry alone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{constant_time, digest, hmac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A token as the connector keeps it, in memory or on disk.
#[derive(Clone)]
pub struct CachedToken {
    pub access_token: SecretString,
    /// Unix seconds.
    pub obtained_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub ext_expires_at: Option<i64>,
    /// The newest refresh token (delegated flows).
    pub refresh_token: Option<SecretString>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("access_token", &"[redacted]")
            .field("obtained_at", &self.obtained_at)
            .field("expires_at", &self.expires_at)
            .field("ext_expires_at", &self.ext_expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

/// Tokens are reused until this long before they expire...
pub const RENEW_BEFORE: i64 = 300;

impl CachedToken {
    /// Whether the access token is still good to send at `now` (unix seconds):
    /// until 5 minutes before expiry, or half its lifetime for short-lived tokens.
    pub fn is_fresh(&self, now: i64) -> bool {
        // Saturating: the values may come back from a cache file someone edited.
        let lifetime = self.expires_at.saturating_sub(self.obtained_at).max(0);
        let margin = RENEW_BEFORE.min(lifetime / 2);
        now < self.expires_at.saturating_sub(margin)
    }
}

/// The file, in `tokens/`, holding the fingerprint key.
pub const KEY_FILE: &str = "fingerprint.key";
const KEY_LEN: usize = 32;

/// The per-state-dir key under which credentials are fingerprinted.
pub struct CredentialKey(hmac::Key);

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey([redacted])")
    }
}

impl CredentialKey {
    /// Read `<state_dir>/tokens/fingerprint.key`, making it (32 random bytes,
    /// 0600) when there is none. Processes racing to make it agree on the first
    /// one written: it is linked into place only if nothing is there yet.
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        let dir = tokens_dir(state_dir);
        ensure_private_dir(&dir)?;
        let path = dir.join(KEY_FILE);
        let bytes = match read_key(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut fresh = [0u8; KEY_LEN];
                aws_lc_rs::rand::SystemRandom::new()
                    .fill(&mut fresh)
                    .map_err(|_| std::io::Error::other("no system randomness"))?;
                // NamedTempFile: O_EXCL, an unpredictable name, mode 0600 (tempfile docs,
                // `NamedTempFile::new_in`); `persist_noclobber` links without replacing.
                let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
                tmp.write_all(&fresh)?;
                tmp.as_file().sync_all()?;
                match tmp.persist_noclobber(&path) {
                    Ok(_) => {}
                    Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.error),
                }
                read_key(&path)?
            }
            other => other?,
        };
        Ok(CredentialKey::from_bytes(&bytes))
    }

    /// The key of these bytes (the shared state derives its own from the state key).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        CredentialKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed, so no two lists give the
    /// same input), hex. Never reversible without the key, and not even then
    /// for a secret of any entropy.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        hex(ctx.sign().as_ref())
    }
}

fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(KEY_LEN);
    File::open(path)?
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() != KEY_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{KEY_FILE} is not a {KEY_LEN}-byte key; delete it to start the cache afresh"),
        ));
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Make the state dir and `tokens/` owner-only (0700) and every file in
/// `tokens/` 0600, where an older version or a person left them open; an error
/// when that cannot be done (another user's folder, a sticky shared one).
pub fn tighten(state_dir: &Path) -> std::io::Result<()> {
    crate::owner_only::tighten_dir(state_dir)?;
    let dir = tokens_dir(state_dir);
    crate::owner_only::tighten_dir(&dir)?;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        // Regular files only: a symbolic link planted here is not followed.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            crate::owner_only::tighten_file(&entry.path())?;
        }
    }
    Ok(())
}

pub fn tokens_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tokens")
}

fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.is_dir() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    Ok(())
}

/// The on-disk form. Plain strings only here, written with mode 0600.
#[derive(Serialize, Deserialize)]
struct Entry {
    key: Vec<String>,
    /// [`CredentialKey::fingerprint`] of the credential that obtained the token.
    /// Entries written before it existed have none, and are never used.
    #[serde(default)]
    credential: Option<String>,
    access_token: String,
    obtained_at: i64,
    expires_at: i64,
    #[serde(default)]
    ext_expires_at: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// One cache entry's files.
#[derive(Debug, Clone)]
pub struct CacheSlot {
    key: Vec<String>,
    /// The fingerprint an entry must carry to be used.
    credential: String,
    path: PathBuf,
    lock_path: PathBuf,
}

impl CacheSlot {
    /// The slot for `key` under `<state_dir>/tokens/`, bound to the credential
    /// whose [`CredentialKey::fingerprint`] is `credential`.
    pub fn new(state_dir: &Path, key: Vec<String>, credential: String) -> Self {
        let dir = tokens_dir(state_dir);
        let joined = serde_json::to_string(&key).unwrap_or_default();
        let hash = digest::digest(&digest::SHA256, joined.as_bytes());
        let name = hex(&hash.as_ref()[..16]);
        CacheSlot {
            key,
            credential,
            path: dir.join(format!("{name}.json")),
            lock_path: dir.join(format!("{name}.lock")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        ensure_private_dir(self.path.parent().expect("slot paths have a parent"))
    }

    /// Take the entry's lock, waiting up to `wait` for another process to
    /// finish its token request; `None` when the lock cannot be had (then we
    /// go on without it: a second token request is better than no result).
    pub async fn lock(&self, wait: Duration) -> Option<File> {
        if let Err(e) = self.ensure_dir() {
            tracing::warn!("token cache: cannot create {}: {e}", self.dir_display());
            return None;
        }
        let file = match open_private(&self.lock_path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("token cache: cannot open lock file: {e}");
                return None;
            }
        };
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Some(file),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::warn!(
                        "token cache: another process held the lock for {}s; going on without it",
                        wait.as_secs()
                    );
                    return None;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    tracing::warn!("token cache: cannot lock: {e}");
                    return None;
                }
            }
        }
    }

    fn dir_display(&self) -> String {
        self.path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// The stored token, if there is a readable one for this exact key that the
    /// same credential obtained. Anything else is a miss: the caller asks Entra
    /// and [`Self::store`] replaces the entry.
    pub fn load(&self) -> Option<CachedToken> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("token cache: cannot read entry: {e}");
                return None;
            }
        };
        decode_entry(&bytes, &self.key, &self.credential)
    }

    /// Replace the entry atomically (temporary file, fsync, rename).
    pub fn store(&self, token: &CachedToken) {
        if let Err(e) = self.try_store(token) {
            tracing::warn!("token cache: cannot write entry: {e}");
        }
    }

    fn try_store(&self, token: &CachedToken) -> std::io::Result<()> {
        self.ensure_dir()?;
        let bytes =
            encode_entry(&self.key, &self.credential, token).map_err(std::io::Error::other)?;
        // O_EXCL, an unguessable name, mode 0600 (tempfile docs, `NamedTempFile::new_in`);
        // dropped unpersisted on an error, it removes itself.
        let dir = self.path.parent().expect("slot paths have a parent");
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map(drop).map_err(|e| e.error)
    }

    /// Forget the entry (e.g. after Entra refused its refresh token).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An entry's JSON (the file's content; the shared cache seals it).
pub(super) fn encode_entry(
    key: &[String],
    credential: &str,
    token: &CachedToken,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Entry {
        key: key.to_vec(),
        credential: Some(credential.to_string()),
        access_token: token.access_token.expose_secret().to_string(),
        obtained_at: token.obtained_at,
        expires_at: token.expires_at,
        ext_expires_at: token.ext_expires_at,
        refresh_token: token
            .refresh_token
            .as_ref()
            .map(|r| r.expose_secret().to_string()),
        scope: token.scope.clone(),
    })
}

/// The token of an entry's JSON, if it is readable, for exactly `key`, and obtained by
/// the credential whose fingerprint is `credential`.
pub(super) fn decode_entry(bytes: &[u8], key: &[String], credential: &str) -> Option<CachedToken> {
    let entry: Entry = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(_) => {
            tracing::warn!("token cache: ignoring an unreadable entry");
            return None;
        }
    };
    if entry.key != key {
        return None;
    }
    let same_credential = entry.credential.as_deref().is_some_and(|c| {
        constant_time::verify_slices_are_equal(c.as_bytes(), credential.as_bytes()).is_ok()
    });
    if !same_credential {
        tracing::debug!("token cache: the entry belongs to another credential; not used");
        return None;
    }
    Some(CachedToken {
        access_token: SecretString::from(entry.access_token),
        obtained_at: entry.obtained_at,
        expires_at: entry.expires_at,
        ext_expires_at: entry.ext_expires_at,
        refresh_token: entry.refresh_token.map(SecretString::from),
        scope: entry.scope,
    })
}

/// Open a file readable and writable by its owner only.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(at: &str, rt: Option<&str>) -> CachedToken {
        CachedToken {
            access_token: SecretString::from(at),
            obtained_at: 1000,
            expires_at: 1000 + 3600,
            ext_expires_at: None,
            refresh_token: rt.map(SecretString::from),
            scope: None,
        }
    }

    #[test]
    fn fresh_until_five_minutes_before_expiry() {
        let t = token("a", None);
        assert!(t.is_fresh(1000 + 3600 - 301));
        assert!(!t.is_fresh(1000 + 3600 - 300));
        let short = CachedToken {
            expires_at: 1060,
            ..token("a", None)
        };
        assert!(short.is_fresh(1029));
        assert!(!short.is_fresh(1030));
    }

    fn fp(dir: &Path, secret: &str) -> String {
        CredentialKey::open(dir)
            .unwrap()
            .fingerprint(&[b"client_secret", secret.as_bytes()])
    }

    #[test]
    fn entries_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let slot = CacheSlot::new(
            dir.path(),
            vec!["u".into(), "c".into()],
            fp(dir.path(), "s"),
        );
        assert!(slot.load().is_none());
        slot.store(&token("at-1", Some("rt-1")));
        let back = slot.load().unwrap();
        assert_eq!(back.access_token.expose_secret(), "at-1");
        assert_eq!(back.refresh_token.as_ref().unwrap().expose_secret(), "rt-1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(slot.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another key never reads this entry, and the file name shows no key part.
        let other = CacheSlot::new(
            dir.path(),
            vec!["u".into(), "d".into()],
            fp(dir.path(), "s"),
        );
        assert!(other.load().is_none());
        let name = slot.path().file_name().unwrap().to_string_lossy();
        assert_eq!(name.len(), "0123456789abcdef0123456789abcdef.json".len());
        assert!(!format!("{back:?}").contains("at-1"));
    }

    #[test]
    fn an_entry_serves_only_the_credential_that_obtained_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = vec!["u".to_string(), "c".to_string()];
        let good = CacheSlot::new(dir.path(), key.clone(), fp(dir.path(), "good-secret"));
        good.store(&token("at-1", None));
        assert!(good.load().is_some());
        // Same key, another secret: a miss, and its token replaces the entry.
        let wrong = CacheSlot::new(dir.path(), key.clone(), fp(dir.path(), "WRONG"));
        assert!(wrong.load().is_none());
        wrong.store(&token("at-2", None));
        assert!(good.load().is_none());
        assert_eq!(wrong.load().unwrap().access_token.expose_secret(), "at-2");
        // The entry names neither the secret nor its plain hash.
        let text = std::fs::read_to_string(good.path()).unwrap();
        let plain = hex(digest::digest(&digest::SHA256, b"good-secret").as_ref());
        assert!(!text.contains("good-secret") && !text.contains(&plain[..16]));
        // An entry written before entries were bound (no fingerprint) is never used.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        old.as_object_mut().unwrap().remove("credential");
        std::fs::write(wrong.path(), old.to_string()).unwrap();
        assert!(wrong.load().is_none());
    }

    #[test]
    fn the_fingerprint_key_is_private_stable_and_per_state_dir() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(fp(a.path(), "s"), fp(a.path(), "s"), "the key is kept");
        assert_ne!(
            fp(a.path(), "s"),
            fp(b.path(), "s"),
            "each state dir has its own"
        );
        assert_ne!(fp(a.path(), "s"), fp(a.path(), "t"));
        let k = CredentialKey::open(a.path()).unwrap();
        assert_ne!(
            k.fingerprint(&[b"ab", b"c"]),
            k.fingerprint(&[b"a", b"bc"]),
            "parts are delimited"
        );
        let path = a.path().join("tokens").join(KEY_FILE);
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A damaged key is an error, never a silently weaker key.
        std::fs::write(&path, b"short").unwrap();
        assert!(CredentialKey::open(a.path()).is_err());
        assert!(!format!("{k:?}").contains(char::is_numeric));
    }
}
