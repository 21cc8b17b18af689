//! Authentication: the API key format, how keys are hashed, and the in-memory
//! [`Directory`] of accounts and keys that the request path reads.
//!
//! The request path never touches the database: it hashes the presented key and looks it
//! up here. [`crate::accounts::Accounts`] keeps the directory in step with the store.
//! Account status is an atomic inside the shared [`Account`], so a block decided by an
//! admin or the detector applies to the very next request without rebuilding anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use crate::settings::{env_secret, EnvLookup};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Every key warden issues starts with this, so leaked keys are easy to recognise.
pub const KEY_PREFIX: &str = "wk-";

/// SHA-256 of a raw key. Keys are 256-bit random strings, so a fast hash is enough: there
/// is nothing to brute-force that a slow hash would protect.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyHash(pub [u8; 32]);

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Already a uniform hash: its first 8 bytes are a fine table hash.
        state.write_u64(u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes")));
    }
}

/// Hasher for maps keyed by [`KeyHash`]: passes its `u64` through instead of hashing a
/// hash again (the request path looks a key up on every request).
#[derive(Default)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl KeyHash {
    pub fn of(raw: &str) -> KeyHash {
        KeyHash(Sha256::digest(raw.as_bytes()).into())
    }
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(KeyHash(out))
    }
}

/// A freshly minted key: the raw value is returned to the caller once and never stored.
pub struct NewKey {
    pub raw: String,
    pub key_id: String,
    pub hash: KeyHash,
    /// Shown in listings to tell keys apart (`wk-…a1b2`); not enough to use the key.
    pub hint: String,
}

pub fn generate_key() -> NewKey {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let raw = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    let hint = format!("{KEY_PREFIX}…{}", &raw[raw.len() - 4..]);
    NewKey { hash: KeyHash::of(&raw), key_id: format!("key_{}", hex::encode(id)), raw, hint }
}

/// The key a client presented: `Authorization: Bearer KEY` or `x-api-key: KEY`.
pub fn presented_key(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let key = v[7..].trim();
            if !key.is_empty() {
                return Some(key);
            }
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Throttled,
    Blocked,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Throttled => "throttled",
            AccountStatus::Blocked => "blocked",
        }
    }
    pub fn parse(s: &str) -> Option<AccountStatus> {
        match s {
            "active" => Some(AccountStatus::Active),
            "throttled" => Some(AccountStatus::Throttled),
            "blocked" => Some(AccountStatus::Blocked),
            _ => None,
        }
    }
    fn from_u8(v: u8) -> AccountStatus {
        match v {
            1 => AccountStatus::Throttled,
            2 => AccountStatus::Blocked,
            _ => AccountStatus::Active,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            AccountStatus::Active => 0,
            AccountStatus::Throttled => 1,
            AccountStatus::Blocked => 2,
        }
    }
}

/// Running totals of an account since this process started (the audit log and the
/// limits layer keep the durable and windowed figures).
#[derive(Default, Debug)]
pub struct UsageCounters {
    pub requests: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl UsageCounters {
    pub fn totals(&self) -> UsageTotals {
        UsageTotals {
            requests: self.requests.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
        }
    }
}

/// An account as the request path sees it. Shared (`Arc`) by all its keys.
#[derive(Debug)]
pub struct Account {
    pub id: Arc<str>,
    tier: RwLock<Arc<str>>,
    /// Per-account overrides of the tier's limits.
    limits: RwLock<crate::limits::Limits>,
    status: AtomicU8,
    /// Set by the detector's `strip` action: soft-label parameters are removed.
    strip_soft_labels: std::sync::atomic::AtomicBool,
    /// The detector's latest score, in thousandths.
    risk_milli: std::sync::atomic::AtomicU32,
    pub usage: UsageCounters,
}

impl Account {
    pub fn new(id: &str, tier: &str, status: AccountStatus) -> Account {
        Account {
            id: Arc::from(id),
            tier: RwLock::new(Arc::from(tier)),
            limits: RwLock::new(Default::default()),
            status: AtomicU8::new(status.to_u8()),
            strip_soft_labels: Default::default(),
            risk_milli: Default::default(),
            usage: UsageCounters::default(),
        }
    }
    pub fn status(&self) -> AccountStatus {
        AccountStatus::from_u8(self.status.load(Ordering::Acquire))
    }
    pub fn set_status(&self, status: AccountStatus) {
        self.status.store(status.to_u8(), Ordering::Release);
    }
    pub fn strips_soft_labels(&self) -> bool {
        self.strip_soft_labels.load(Ordering::Acquire)
    }
    pub fn set_strip_soft_labels(&self, on: bool) {
        self.strip_soft_labels.store(on, Ordering::Release);
    }
    pub fn risk_score(&self) -> f64 {
        self.risk_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
    pub fn set_risk_score(&self, score: f64) {
        self.risk_milli.store((score.clamp(0.0, 1.0) * 1000.0).round() as u32, Ordering::Relaxed);
    }
    pub fn tier(&self) -> Arc<str> {
        self.tier.read().expect("tier lock poisoned").clone()
    }
    pub fn set_tier(&self, tier: &str) {
        *self.tier.write().expect("tier lock poisoned") = Arc::from(tier);
    }
    pub fn limits(&self) -> crate::limits::Limits {
        *self.limits.read().expect("limits lock poisoned")
    }
    pub fn set_limits(&self, limits: crate::limits::Limits) {
        *self.limits.write().expect("limits lock poisoned") = limits;
    }
}

/// What a valid key resolves to.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: Arc<str>,
    pub account: Arc<Account>,
}

/// Accounts and live keys, in memory. Writes are rare (admin actions), reads happen on
/// every request, so plain `RwLock`s with short critical sections are enough.
#[derive(Default)]
pub struct Directory {
    keys: RwLock<HashMap<KeyHash, Principal, std::hash::BuildHasherDefault<PassThrough>>>,
    key_ids: RwLock<foldhash::HashMap<Arc<str>, KeyHash>>,
    // foldhash, not SipHash: looked up on every request, keyed by operator-made ids.
    accounts: RwLock<foldhash::HashMap<Arc<str>, Arc<Account>>>,
}

impl Directory {
    /// Resolves a raw key to its principal; `None` for unknown or revoked keys.
    pub fn authenticate(&self, raw_key: &str) -> Option<Principal> {
        let hash = KeyHash::of(raw_key);
        self.keys.read().expect("key index poisoned").get(&hash).cloned()
    }

    pub fn account(&self, id: &str) -> Option<Arc<Account>> {
        self.accounts.read().expect("account index poisoned").get(id).cloned()
    }

    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts.read().expect("account index poisoned").values().cloned().collect()
    }

    /// Inserts an account, or updates tier and status of a known one (keeping its keys).
    pub fn upsert_account(&self, id: &str, tier: &str, status: AccountStatus) -> Arc<Account> {
        let mut accounts = self.accounts.write().expect("account index poisoned");
        if let Some(existing) = accounts.get(id) {
            existing.set_tier(tier);
            existing.set_status(status);
            return existing.clone();
        }
        let account = Arc::new(Account::new(id, tier, status));
        accounts.insert(account.id.clone(), account.clone());
        account
    }

    /// Makes a key usable. Returns false if its account is unknown.
    pub fn add_key(&self, key_id: &str, hash: KeyHash, account_id: &str) -> bool {
        let Some(account) = self.account(account_id) else { return false };
        let key_id: Arc<str> = Arc::from(key_id);
        self.keys.write().expect("key index poisoned").insert(hash, Principal { key_id: key_id.clone(), account });
        self.key_ids.write().expect("key index poisoned").insert(key_id, hash);
        true
    }

    /// Makes a key unusable from the next request on.
    pub fn revoke_key(&self, key_id: &str) {
        if let Some(hash) = self.key_ids.write().expect("key index poisoned").remove(key_id) {
            self.keys.write().expect("key index poisoned").remove(&hash);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The `[admin]` section: the admin API's bearer token.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawAdmin {
    /// Environment variable holding the admin bearer token.
    pub token_env: Option<String>,
}

#[derive(Clone)]
pub struct AdminConfig {
    pub token: String,
    pub token_env: String,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig").field("token", &"<redacted>").field("token_env", &self.token_env).finish()
    }
}

impl AdminConfig {
    /// Validates `[admin]` (the token from the environment variable it names).
    pub fn from_raw(raw: RawAdmin, env: EnvLookup<'_>, problems: &mut Vec<String>) -> AdminConfig {
        let token_env = raw.token_env.unwrap_or_else(|| "WARDEN_ADMIN_TOKEN".into());
        let token = env_secret("admin.token_env", &token_env, env, problems).unwrap_or_default();
        AdminConfig { token, token_env }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_authenticate_until_revoked() {
        let dir = Directory::default();
        dir.upsert_account("acme", "default", AccountStatus::Active);
        let key = generate_key();
        assert!(key.raw.starts_with(KEY_PREFIX));
        assert_eq!(key.raw.len(), KEY_PREFIX.len() + 64);
        assert!(!key.hint.contains(&key.raw[3..20]));
        assert!(dir.add_key(&key.key_id, key.hash, "acme"));
        let p = dir.authenticate(&key.raw).expect("key resolves");
        assert_eq!(&*p.account.id, "acme");
        assert_eq!(&*p.key_id, key.key_id);
        assert!(dir.authenticate("wk-nope").is_none());
        dir.revoke_key(&key.key_id);
        assert!(dir.authenticate(&key.raw).is_none());
    }

    #[test]
    fn status_change_is_seen_through_existing_principals() {
        let dir = Directory::default();
        dir.upsert_account("a", "default", AccountStatus::Active);
        let key = generate_key();
        dir.add_key(&key.key_id, key.hash, "a");
        let p = dir.authenticate(&key.raw).unwrap();
        dir.upsert_account("a", "default", AccountStatus::Blocked);
        assert_eq!(p.account.status(), AccountStatus::Blocked);
    }

    #[test]
    fn presented_key_reads_bearer_and_x_api_key() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", "wk-1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("wk-1"));
        h.insert("authorization", "Bearer wk-2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("wk-2"));
        h.insert("authorization", "bearer   wk-3 ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("wk-3"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("wk-1"));
    }

    #[test]
    fn key_hash_hex_round_trips() {
        let h = KeyHash::of("wk-abc");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
    }
}
