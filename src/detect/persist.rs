//! Where alerts are kept: the detection library's one outside need, as a trait the store
//! implements, so the engine and its service can be built and tested without a database
//! and the library imports nothing above request understanding.

use futures_util::future::BoxFuture;

use super::{Alert, AlertStatus};

/// A failure of the place alerts are kept (its message is shown to reviewers as an
/// internal error).
pub type StoreFailure = Box<dyn std::error::Error + Send + Sync>;

pub trait AlertStore: Send + Sync + 'static {
    /// Inserts or replaces an alert (its body, status and members).
    fn put_alert<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), StoreFailure>>;
    /// One alert by id.
    fn alert<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Alert>, StoreFailure>>;
    /// Alerts, newest first, filtered by status and/or member account, at most `limit`.
    fn alerts<'a>(
        &'a self,
        status: Option<AlertStatus>,
        account: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StoreFailure>>;
}
