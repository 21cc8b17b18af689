//! Accounts and keys as one service: durable in the [`Store`], mirrored in the in-memory
//! [`Directory`] the request path reads. Every change goes through here so the two never
//! disagree, and every reviewer-visible change is recorded with who did it and why.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::auth::{generate_key, AccountStatus, Directory, KeyHash, UsageTotals};
use crate::clock::rfc3339_millis;
use crate::store::{AccountRecord, ActionRecord, KeyRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An account as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub id: String,
    pub tier: String,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    /// Overrides of the tier's limits (fields not set come from the tier).
    pub limits: crate::limits::Limits,
    pub risk_score: f64,
    pub created_at: String,
    pub updated_at: String,
    /// Traffic since this warden process started.
    pub usage: UsageTotals,
}

/// A freshly created key; `key` is shown this once and never again.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub key_id: String,
    pub account_id: String,
    pub key: String,
    pub hint: String,
    pub created_at: String,
}

#[derive(Clone)]
pub struct Accounts {
    store: Store,
    directory: Arc<Directory>,
    /// Tier names from the config; accounts may only reference these.
    tiers: Arc<arc_swap::ArcSwap<Vec<String>>>,
}

impl Accounts {
    /// Loads every account and live key from the store into a fresh directory.
    pub async fn load(store: Store, tiers: Vec<String>) -> Result<Accounts, AccountError> {
        let directory = Arc::new(Directory::default());
        for a in store.accounts().await? {
            directory.upsert_account(&a.id, &a.tier, a.status).set_limits(a.limits);
        }
        for k in store.live_keys().await? {
            match KeyHash::from_hex(&k.key_hash) {
                Some(hash) => {
                    directory.add_key(&k.key_id, hash, &k.account_id);
                }
                None => tracing::warn!(key_id = %k.key_id, "ignoring key with a corrupt hash"),
            }
        }
        Ok(Accounts { store, directory, tiers: Arc::new(arc_swap::ArcSwap::from_pointee(tiers)) })
    }

    /// The tiers accounts may be put on (after a configuration reload, the new ones).
    pub fn set_tiers(&self, tiers: Vec<String>) {
        self.tiers.store(Arc::new(tiers));
    }

    fn check_tier(&self, tier: &str) -> Result<(), AccountError> {
        let tiers = self.tiers.load();
        if tiers.iter().any(|t| t == tier) {
            return Ok(());
        }
        Err(AccountError::Invalid(format!("unknown tier `{tier}` (configured: {})", tiers.join(", "))))
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn view(&self, rec: AccountRecord) -> AccountView {
        let live = self.directory.account(&rec.id);
        AccountView {
            usage: live.as_ref().map(|a| a.usage.totals()).unwrap_or_default(),
            risk_score: live.as_ref().map(|a| a.risk_score()).unwrap_or(0.0),
            created_at: rfc3339_millis(rec.created_at),
            updated_at: rfc3339_millis(rec.updated_at),
            id: rec.id,
            tier: rec.tier,
            status: rec.status,
            status_reason: rec.status_reason,
            limits: rec.limits,
        }
    }

    pub async fn create(&self, id: &str, tier: &str, actor: &str) -> Result<AccountView, AccountError> {
        validate_account_id(id)?;
        self.check_tier(tier)?;
        let rec = self.store.create_account(id, tier).await?;
        self.directory.upsert_account(&rec.id, &rec.tier, rec.status);
        self.store.record_action(actor, "create_account", "account", id, None).await?;
        Ok(self.view(rec))
    }

    pub async fn get(&self, id: &str) -> Result<AccountView, AccountError> {
        let rec = self.store.account(id).await?.ok_or_else(|| AccountError::NotFound(format!("account `{id}`")))?;
        Ok(self.view(rec))
    }

    pub async fn list(&self) -> Result<Vec<AccountView>, AccountError> {
        Ok(self.store.accounts().await?.into_iter().map(|r| self.view(r)).collect())
    }

    /// Changes an account's status in the store and, at once, for the request path.
    pub async fn set_status(
        &self,
        id: &str,
        status: AccountStatus,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<AccountView, AccountError> {
        let rec = self
            .store
            .set_account_status(id, status, reason)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("account `{id}`")))?;
        self.directory.upsert_account(&rec.id, &rec.tier, rec.status);
        let action = match status {
            AccountStatus::Active => "unblock",
            AccountStatus::Throttled => "throttle",
            AccountStatus::Blocked => "block",
        };
        self.store.record_action(actor, action, "account", id, reason).await?;
        Ok(self.view(rec))
    }

    /// Changes an account's tier and/or limit overrides (`limits` replaces all overrides).
    pub async fn update_plan(
        &self,
        id: &str,
        tier: Option<&str>,
        limits: Option<crate::limits::Limits>,
        actor: &str,
    ) -> Result<AccountView, AccountError> {
        let current = self.store.account(id).await?.ok_or_else(|| AccountError::NotFound(format!("account `{id}`")))?;
        let tier = tier.unwrap_or(&current.tier);
        self.check_tier(tier)?;
        let limits = limits.unwrap_or(current.limits);
        let rec = self
            .store
            .set_account_plan(id, tier, &limits)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("account `{id}`")))?;
        self.directory.upsert_account(&rec.id, &rec.tier, rec.status).set_limits(rec.limits);
        let what = serde_json::json!({"tier": rec.tier, "limits": rec.limits}).to_string();
        self.store.record_action(actor, "update_plan", "account", id, Some(&what)).await?;
        Ok(self.view(rec))
    }

    pub async fn create_key(&self, account_id: &str, actor: &str) -> Result<CreatedKey, AccountError> {
        if self.store.account(account_id).await?.is_none() {
            return Err(AccountError::NotFound(format!("account `{account_id}`")));
        }
        let key = generate_key();
        let rec = self.store.create_key(&key.key_id, account_id, &key.hash.to_hex(), &key.hint).await?;
        self.directory.add_key(&key.key_id, key.hash, account_id);
        self.store.record_action(actor, "create_key", "key", &key.key_id, None).await?;
        Ok(CreatedKey {
            key_id: rec.key_id,
            account_id: rec.account_id,
            key: key.raw,
            hint: rec.hint,
            created_at: rfc3339_millis(rec.created_at),
        })
    }

    pub async fn keys(&self, account_id: &str) -> Result<Vec<KeyRecord>, AccountError> {
        if self.store.account(account_id).await?.is_none() {
            return Err(AccountError::NotFound(format!("account `{account_id}`")));
        }
        Ok(self.store.keys_of(account_id).await?)
    }

    pub async fn revoke_key(&self, key_id: &str, actor: &str) -> Result<KeyRecord, AccountError> {
        let rec =
            self.store.revoke_key(key_id).await?.ok_or_else(|| AccountError::NotFound(format!("key `{key_id}`")))?;
        self.directory.revoke_key(key_id);
        self.store.record_action(actor, "revoke_key", "key", key_id, None).await?;
        Ok(rec)
    }

    pub async fn history(&self, account_id: &str, limit: i64) -> Result<Vec<ActionRecord>, AccountError> {
        Ok(self.store.actions_on("account", account_id, limit).await?)
    }
}

/// How far back each sync looks beyond its previous run: covers clocks that differ
/// between replicas and transactions that commit after the time they recorded.
const SYNC_MARGIN_MS: i64 = 30_000;

/// Keeps this replica's directory in step with changes other replicas make to the shared
/// store (accounts created, blocked, re-planned; keys created or revoked). Each run asks
/// the store for rows changed since the previous run (minus [`SYNC_MARGIN_MS`]) and
/// applies those it has not applied yet, so a change made through any replica reaches
/// every replica within one sync interval.
pub struct ReplicaSync {
    accounts: Accounts,
    /// Start of the previous run, by this replica's clock.
    last_run_ms: i64,
    /// Rows applied within the margin, by the version applied: a row read again is not
    /// applied again (it could undo a newer change made here meanwhile).
    seen_accounts: HashMap<String, i64>,
    /// Keys by (revoked, time of that state).
    seen_keys: HashMap<String, (bool, i64)>,
}

/// What one sync run changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub accounts: usize,
    pub keys: usize,
}

impl ReplicaSync {
    /// Starts from `loaded_at_ms`, when the directory was loaded from the store.
    pub fn new(accounts: Accounts, loaded_at_ms: i64) -> ReplicaSync {
        ReplicaSync { accounts, last_run_ms: loaded_at_ms, seen_accounts: HashMap::new(), seen_keys: HashMap::new() }
    }

    /// The store was closed (shutdown): there is nothing more to sync.
    pub fn store_closed(&self) -> bool {
        self.accounts.store.is_closed()
    }

    pub async fn run(&mut self) -> Result<Synced, AccountError> {
        let started = crate::clock::now_millis();
        let since = self.last_run_ms - SYNC_MARGIN_MS;
        let store = self.accounts.store.clone();
        let directory = self.accounts.directory.clone();
        let mut synced = Synced::default();
        for a in store.accounts_changed_since(since).await? {
            if self.seen_accounts.get(&a.id) == Some(&a.updated_at) {
                continue;
            }
            directory.upsert_account(&a.id, &a.tier, a.status).set_limits(a.limits);
            self.seen_accounts.insert(a.id, a.updated_at);
            synced.accounts += 1;
        }
        for k in store.keys_changed_since(since).await? {
            let revoked = k.revoked_at.is_some();
            let state = (revoked, k.revoked_at.unwrap_or(k.created_at));
            if self.seen_keys.get(&k.key_id) == Some(&state) {
                continue;
            }
            if revoked {
                directory.revoke_key(&k.key_id);
            } else if let Some(hash) = KeyHash::from_hex(&k.key_hash) {
                // Its account is created first (same store), so it is known by now.
                if !directory.add_key(&k.key_id, hash, &k.account_id) {
                    continue;
                }
            }
            self.seen_keys.insert(k.key_id, state);
            synced.keys += 1;
        }
        // Only what the next run can read again needs remembering.
        let horizon = started - SYNC_MARGIN_MS;
        self.seen_accounts.retain(|_, updated| *updated >= horizon);
        self.seen_keys.retain(|_, (_, at)| *at >= horizon);
        self.last_run_ms = started;
        Ok(synced)
    }
}

/// Account ids appear in URLs, logs and audit records: keep them to a safe alphabet.
/// The pattern is `[A-Za-z0-9][A-Za-z0-9._@-]{0,127}`: a letter or digit first, so that no
/// id is `.` or `..` (a path segment that means something else) or starts like an
/// option (`-x`).
pub fn validate_account_id(id: &str) -> Result<(), AccountError> {
    let ok = id.len() <= 128
        && id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(
            "account id must match [A-Za-z0-9][A-Za-z0-9._@-]{0,127}: 1-128 letters, digits, `.`, `_`, `@`, `-`, starting with a letter or digit".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_account_id;

    #[test]
    fn account_ids_follow_the_documented_pattern() {
        for ok in ["acme", "a", "team.ml-2", "ops@example.com", "A_1", &"x".repeat(128)] {
            assert!(validate_account_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "-rf", "_x", "@x", "a/b", "a b", "é", "a%2e", &"x".repeat(129)] {
            assert!(validate_account_id(bad).is_err(), "{bad}");
        }
    }
}
