//! Answers kept between runs, in memory-backed places only, and one upstream call per
//! registry when many processes ask at once.
//!
//! One slot per registry; the entry inside records everything that decided the answer
//! (the credential's source and the AWS identity in effect), and a lookup whose key differs
//! is a miss. A corrupt, foreign or unreadable entry is a miss too, never an error.

mod keyring;
mod runtime_dir;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use serde::{Deserialize, Serialize};

use crate::backend::{CredentialBackend, Fetched, PutOptions, SsmLocation};
use crate::config::{CacheSettings, CacheStoreChoice, CredentialSource, Environment};
use crate::host::RegistryHost;
use crate::secret::Secret;

/// An ECR token is refreshed this long before it expires, so a long pull never starts
/// with a token about to die. Short-lived tokens refresh at half-life instead.
const ECR_REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);
/// A token this close to its end is not served even when refreshing failed.
const STALE_GRACE: Duration = Duration::from_secs(60);
const LOCK_POLL: Duration = Duration::from_millis(5);

/// Where entries live.
pub trait SlotStore {
    fn describe(&self) -> String;
    fn read(&self, slot: &str) -> Option<Secret<Vec<u8>>>;
    /// `lifetime`: how long the store may keep it at most.
    fn write(&self, slot: &str, bytes: &Secret<Vec<u8>>, lifetime: Duration) -> anyhow::Result<()>;
    fn remove(&self, slot: &str);
    fn clear(&self) -> anyhow::Result<usize>;
}

pub struct Cache {
    /// Every store an entry of this user could be in, whatever this run's settings: `store`,
    /// `erase` and `cache clear` reach them all, so no copy outlives its secret.
    stores: Vec<Box<dyn SlotStore>>,
    /// The one this run reads and fills; `None` when caching is off or unavailable.
    active: Option<usize>,
    /// Where single-flight locks would go; created only when a lock is needed, so a cache
    /// hit touches nothing.
    runtime_dir: Option<PathBuf>,
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Memory-backed directories that may hold this user's cache, best first.
fn runtime_dirs(env: &Environment, uid: u32) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env.runtime_dir.iter().cloned().collect();
    dirs.push(PathBuf::from(format!("/run/user/{uid}")));
    if uid == 0 {
        dirs.push(PathBuf::from("/run"));
    }
    dirs.into_iter()
        .filter(|d| d.is_dir() && runtime_dir::memory_backed(d))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keyring,
    RuntimeDir,
    Directory,
}

impl Cache {
    /// Finds the stores and picks the one the settings allow.
    pub fn open(settings: &CacheSettings, env: &Environment) -> Cache {
        let uid = uid();
        let mut stores: Vec<(Kind, Box<dyn SlotStore>)> = Vec::new();
        if let Some(dir) = &settings.directory {
            if let Some(store) = runtime_dir::RuntimeDir::open(dir, uid) {
                stores.push((Kind::Directory, Box::new(store)));
            }
        }
        if let Some(keyring) = keyring::Keyring::open() {
            stores.push((Kind::Keyring, Box::new(keyring)));
        }
        let in_runtime_dir = runtime_dirs(env, uid).into_iter().find_map(|dir| {
            runtime_dir::RuntimeDir::open(&dir.join(format!("slothbox-{uid}")), uid)
        });
        if let Some(store) = in_runtime_dir {
            stores.push((Kind::RuntimeDir, Box::new(store)));
        }
        let wanted: &[Kind] = match (&settings.directory, settings.store) {
            (_, CacheStoreChoice::Off) => &[],
            (Some(_), _) => &[Kind::Directory],
            (None, CacheStoreChoice::Keyring) => &[Kind::Keyring],
            (None, CacheStoreChoice::RuntimeDir) => &[Kind::RuntimeDir],
            (None, CacheStoreChoice::Auto) => &[Kind::Keyring, Kind::RuntimeDir],
        };
        let active = wanted
            .iter()
            .find_map(|kind| stores.iter().position(|(k, _)| k == kind));
        match active {
            Some(i) => tracing::debug!(store = %stores[i].1.describe(), "cache store in use"),
            None => {
                tracing::debug!(choice = ?settings.store, "no cache store in use: every get asks AWS")
            }
        }
        Cache {
            stores: stores.into_iter().map(|(_, store)| store).collect(),
            active,
            runtime_dir: env.runtime_dir.clone(),
        }
    }

    fn active(&self) -> Option<&dyn SlotStore> {
        self.active.map(|i| self.stores[i].as_ref())
    }

    pub fn is_caching(&self) -> bool {
        self.active.is_some()
    }

    /// Empties every store; returns how many entries went.
    pub fn clear(&self) -> anyhow::Result<usize> {
        let mut removed = 0;
        for store in &self.stores {
            removed += store.clear()?;
        }
        Ok(removed)
    }

    /// The entry for `key`, unless it has expired; an expired one is removed on sight, so
    /// a secret does not outlive its credential in a store without timeouts of its own.
    fn lookup(&self, registry: &RegistryHost, key: &str) -> Option<CacheEntry> {
        let bytes = self.active()?.read(&slot(registry))?;
        let entry = CacheEntry::decode(&bytes)?;
        if entry.expires_at <= now_secs() {
            self.forget(registry);
            return None;
        }
        (entry.key == key).then_some(entry)
    }

    fn save(&self, registry: &RegistryHost, entry: &CacheEntry) {
        let Some(store) = self.active() else {
            return;
        };
        let lifetime = Duration::from_secs(entry.expires_at.saturating_sub(now_secs()));
        if let Err(err) = store.write(&slot(registry), &entry.encode(), lifetime) {
            tracing::debug!(%registry, error = %err, "could not cache the answer");
        }
    }

    /// Drops the registry's entry from every store.
    fn forget(&self, registry: &RegistryHost) {
        for store in &self.stores {
            store.remove(&slot(registry));
        }
    }

    /// Waits, until `deadline`, to be the one process fetching or writing `registry`. The
    /// lock is the kernel's, so a holder that crashed releases it at once.
    fn single_flight(
        &self,
        registry: &RegistryHost,
        deadline: Instant,
    ) -> anyhow::Result<Option<File>> {
        let Some(dir) = lock_dir(self.runtime_dir.as_deref(), uid()) else {
            return Ok(None);
        };
        let path = dir.join(format!("{}.lock", slot(registry)));
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
        else {
            return Ok(None);
        };
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL)
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(anyhow!(
                        "{registry}: another docker-credential-slothbox process has been fetching this registry's credential past the deadline; check network access to AWS"
                    ))
                }
                Err(std::fs::TryLockError::Error(_)) => return Ok(None),
            }
        }
    }
}

fn lock_dir(runtime_dir: Option<&Path>, uid: u32) -> Option<PathBuf> {
    let name = format!("slothbox-{uid}-locks");
    let user_run = PathBuf::from(format!("/run/user/{uid}"));
    let mut candidates: Vec<PathBuf> = runtime_dir
        .into_iter()
        .chain(std::iter::once(user_run.as_path()))
        .filter(|d| d.is_dir())
        .map(|d| d.join(&name))
        .collect();
    candidates.push(std::env::temp_dir().join(&name));
    candidates
        .iter()
        .find_map(|dir| runtime_dir::private_dir(dir, uid))
}

/// One slot per registry: a name safe in a file name and a key description.
fn slot(registry: &RegistryHost) -> String {
    registry
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything that decides the answer for `registry`, so a changed credentials entry,
/// region, principal or endpoint never gets another's cached secret.
pub fn cache_key(registry: &RegistryHost, source: &CredentialSource, aws_identity: &str) -> String {
    let source = match source {
        CredentialSource::Ssm {
            username,
            parameter,
            region,
        } => format!(
            "ssm|{}|{}|{username}",
            parameter.name,
            region.as_deref().unwrap_or("-")
        ),
        CredentialSource::Ecr(ecr) => format!("ecr|{}|{}|{}", ecr.account, ecr.region, ecr.fips),
    };
    format!("v1|{registry}|{source}|{aws_identity}")
}

#[derive(Debug)]
struct CacheEntry {
    key: String,
    username: String,
    secret: Secret<String>,
    /// Served without asking upstream until then (unix seconds).
    fresh_until: u64,
    /// The credential's own end (unix seconds); the store drops the entry then.
    expires_at: u64,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    key: &'a str,
    username: &'a str,
    secret: &'a str,
    fresh_until: u64,
    expires_at: u64,
}

#[derive(Deserialize)]
struct EntryIn {
    key: String,
    username: String,
    secret: String,
    fresh_until: u64,
    expires_at: u64,
}

impl CacheEntry {
    fn encode(&self) -> Secret<Vec<u8>> {
        let out = EntryOut {
            key: &self.key,
            username: &self.username,
            // Into a memory-backed store only: see SlotStore implementations.
            secret: self.secret.expose(),
            fresh_until: self.fresh_until,
            expires_at: self.expires_at,
        };
        Secret::new(serde_json::to_vec(&out).unwrap_or_default())
    }

    fn decode(bytes: &Secret<Vec<u8>>) -> Option<CacheEntry> {
        let entry: EntryIn = serde_json::from_slice(bytes.expose()).ok()?;
        Some(CacheEntry {
            key: entry.key,
            username: entry.username,
            secret: Secret::new(entry.secret),
            fresh_until: entry.fresh_until,
            expires_at: entry.expires_at,
        })
    }

    fn to_fetched(&self) -> Fetched {
        Fetched {
            username: self.username.clone(),
            secret: self.secret.clone(),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(self.expires_at)),
            warning: None,
        }
    }
}

/// How long an answer may be served from the cache: `(fresh_until, expires_at)` in unix
/// seconds, or `None` when it must not be cached at all.
pub fn freshness(
    source: &CredentialSource,
    fetched_expiry: Option<SystemTime>,
    now: SystemTime,
    ssm_ttl: Duration,
) -> Option<(u64, u64)> {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    let now_s = secs(now)?;
    match source {
        CredentialSource::Ssm { .. } => {
            if ssm_ttl.is_zero() {
                return None;
            }
            let until = now_s + ssm_ttl.as_secs().max(1);
            Some((until, until))
        }
        CredentialSource::Ecr(_) => {
            let expires = secs(fetched_expiry?)?;
            let lifetime = expires.checked_sub(now_s)?;
            let margin = ECR_REFRESH_MARGIN.as_secs().min(lifetime / 2);
            let fresh_until = expires - margin;
            (fresh_until > now_s).then_some((fresh_until, expires))
        }
    }
}

/// A backend with the cache in front: hits never reach the inner backend, concurrent
/// misses make one call, and `store`/`erase` drop the registry's entry.
pub struct CachingBackend<B> {
    inner: B,
    cache: Cache,
    aws_identity: String,
    ssm_ttl: Duration,
    deadline: Instant,
}

impl<B> CachingBackend<B> {
    pub fn new(
        inner: B,
        cache: Cache,
        aws_identity: String,
        ssm_ttl: Duration,
        deadline: Instant,
    ) -> Self {
        CachingBackend {
            inner,
            cache,
            aws_identity,
            ssm_ttl,
            deadline,
        }
    }
}

impl<B: CredentialBackend> CachingBackend<B> {
    /// Runs a write to the registry's secret under its single-flight lock, then drops its
    /// cached entry: a `get` fetching the old secret meanwhile finishes (and caches) before
    /// the write, never after the entry was dropped.
    fn write_through(
        &self,
        registry: &RegistryHost,
        write: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let _flight = self.cache.single_flight(registry, self.deadline)?;
        let result = write();
        self.cache.forget(registry);
        result
    }
}

impl<B: CredentialBackend> CredentialBackend for CachingBackend<B> {
    fn fetch(&self, registry: &RegistryHost, source: &CredentialSource) -> anyhow::Result<Fetched> {
        let cache = &self.cache;
        if !cache.is_caching() {
            return self.inner.fetch(registry, source);
        }
        let key = cache_key(registry, source, &self.aws_identity);
        let fresh = |entry: &CacheEntry| entry.fresh_until > now_secs();
        let cached = cache.lookup(registry, &key);
        if let Some(entry) = cached.as_ref().filter(|e| fresh(e)) {
            tracing::debug!(%registry, "cache hit");
            return Ok(entry.to_fetched());
        }
        let result = match cache.single_flight(registry, self.deadline) {
            Ok(_flight) => {
                // Whoever held the lock before us may have fetched it meanwhile.
                let previous = cache.lookup(registry, &key);
                if let Some(entry) = previous.as_ref().filter(|e| fresh(e)) {
                    tracing::debug!(%registry, "cache hit after waiting for another fetch");
                    return Ok(entry.to_fetched());
                }
                tracing::debug!(%registry, "cache miss");
                let fetched = self.inner.fetch(registry, source);
                if let Ok(fetched) = &fetched {
                    let now = SystemTime::now();
                    if let Some((fresh_until, expires_at)) =
                        freshness(source, fetched.expires_at, now, self.ssm_ttl)
                    {
                        cache.save(
                            registry,
                            &CacheEntry {
                                key,
                                username: fetched.username.clone(),
                                secret: fetched.secret.clone(),
                                fresh_until,
                                expires_at,
                            },
                        );
                    }
                }
                fetched.map_err(|err| (err, previous))
            }
            Err(err) => Err((err, cached)),
        };
        result.or_else(|(err, previous)| serve_stale(source, previous, err))
    }

    fn put_secret(
        &self,
        registry: &RegistryHost,
        location: &SsmLocation,
        secret: &Secret<String>,
        options: &PutOptions,
    ) -> anyhow::Result<()> {
        self.write_through(registry, || {
            self.inner.put_secret(registry, location, secret, options)
        })
    }

    fn delete_secret(&self, registry: &RegistryHost, location: &SsmLocation) -> anyhow::Result<()> {
        self.write_through(registry, || self.inner.delete_secret(registry, location))
    }
}

/// When fetching failed (or waiting for another fetch ran out of time): an ECR token that
/// is still valid beats a failed pull. SSM secrets are never served stale, since a
/// rotation may be why the fetch is happening.
fn serve_stale(
    source: &CredentialSource,
    previous: Option<CacheEntry>,
    err: anyhow::Error,
) -> anyhow::Result<Fetched> {
    match previous {
        Some(entry)
            if matches!(source, CredentialSource::Ecr(_))
                && entry.expires_at > now_secs() + STALE_GRACE.as_secs() =>
        {
            let mut fetched = entry.to_fetched();
            fetched.warning = Some(format!(
                "warning: refreshing the ECR token failed; using the cached one, valid for {} more minutes ({})",
                (entry.expires_at - now_secs()) / 60,
                crate::protocol::one_line(&format!("{err:#}"))
            ));
            Ok(fetched)
        }
        _ => Err(err),
    }
}

/// Whether a path is memory-backed, for `doctor` and messages.
pub fn is_memory_backed(path: &Path) -> bool {
    runtime_dir::memory_backed(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SsmParameter;
    use crate::host::EcrRegistry;

    fn ssm() -> CredentialSource {
        CredentialSource::Ssm {
            username: "u".into(),
            parameter: SsmParameter::default_for("rc_1"),
            region: None,
        }
    }

    fn ecr() -> CredentialSource {
        CredentialSource::Ecr(EcrRegistry {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            fips: false,
        })
    }

    #[test]
    fn ssm_answers_live_for_the_ttl_and_zero_turns_it_off() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            freshness(&ssm(), None, now, Duration::from_secs(60)),
            Some((1_060, 1_060))
        );
        assert_eq!(freshness(&ssm(), None, now, Duration::ZERO), None);
    }

    #[test]
    fn ecr_tokens_refresh_before_they_expire() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let twelve_hours = now + Duration::from_secs(12 * 3600);
        assert_eq!(
            freshness(&ecr(), Some(twelve_hours), now, Duration::ZERO),
            Some((1_000_000 + 12 * 3600 - 900, 1_000_000 + 12 * 3600))
        );
        // Short-lived: half-life.
        let short = now + Duration::from_secs(600);
        assert_eq!(
            freshness(&ecr(), Some(short), now, Duration::ZERO),
            Some((1_000_300, 1_000_600))
        );
        // Expired or about to: never cached.
        assert_eq!(freshness(&ecr(), Some(now), now, Duration::ZERO), None);
        assert_eq!(
            freshness(
                &ecr(),
                Some(now - Duration::from_secs(5)),
                now,
                Duration::ZERO
            ),
            None
        );
        assert_eq!(freshness(&ecr(), None, now, Duration::ZERO), None);
    }

    #[test]
    fn keys_differ_by_source_and_identity() {
        let host = RegistryHost::parse("ghcr.io").unwrap();
        let a = cache_key(&host, &ssm(), "AWS_PROFILE=a");
        assert_ne!(a, cache_key(&host, &ssm(), "AWS_PROFILE=b"));
        assert_ne!(a, cache_key(&host, &ecr(), "AWS_PROFILE=a"));
        let other = CredentialSource::Ssm {
            username: "u".into(),
            parameter: SsmParameter::default_for("rc_2"),
            region: None,
        };
        assert_ne!(a, cache_key(&host, &other, "AWS_PROFILE=a"));
    }

    #[test]
    fn entries_round_trip_and_garbage_is_a_miss() {
        let entry = CacheEntry {
            key: "k".into(),
            username: "u".into(),
            secret: Secret::new("s".into()),
            fresh_until: 2,
            expires_at: 3,
        };
        let back = CacheEntry::decode(&entry.encode()).unwrap();
        assert_eq!(back.secret.expose(), "s");
        assert_eq!((back.fresh_until, back.expires_at), (2, 3));
        assert!(CacheEntry::decode(&Secret::new(b"\xff{not json".to_vec())).is_none());
        assert!(!format!("{entry:?}").contains("\"s\""));
    }

    #[test]
    fn slots_are_safe_names() {
        let host = RegistryHost::parse("[::1]:5000").unwrap();
        assert_eq!(slot(&host), "___1__5000");
    }

    #[test]
    fn runtime_dir_store_round_trips_and_ignores_foreign_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = runtime_dir::RuntimeDir::open(&dir.path().join("c"), uid()).unwrap();
        let bytes = Secret::new(b"payload".to_vec());
        store
            .write("ghcr.io", &bytes, Duration::from_secs(5))
            .unwrap();
        assert_eq!(store.read("ghcr.io").unwrap().expose(), b"payload");
        let path = dir.path().join("c/ghcr.io.json");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            store.read("ghcr.io").is_none(),
            "a readable-by-others entry was trusted"
        );
        assert_eq!(store.clear().unwrap(), 1);
        assert!(store.read("ghcr.io").is_none());
    }
}
