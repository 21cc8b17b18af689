//! The admin commands of the command line (`warden accounts|keys ...`): thin wrappers over
//! the admin API of a running warden, so every action goes through the same checks and
//! is recorded like a dashboard action.

use http::Method;
use serde_json::{json, Value};

use crate::client::AdminClient;

pub enum AccountsCommand {
    Create { id: String, tier: Option<String> },
    List,
    Show { id: String },
    Block { id: String, reason: Option<String> },
    Unblock { id: String, reason: Option<String> },
}

pub enum KeysCommand {
    /// `key_only`: print the key alone (for `KEY=$(warden keys create ID --key-only)`).
    Create {
        account: String,
        key_only: bool,
    },
    List {
        account: String,
    },
    Revoke {
        key_id: String,
    },
}

pub enum AlertsCommand {
    List { status: Option<String>, account: Option<String>, limit: Option<u32> },
    Show { id: String },
    Resolve { id: String, verdict: String, note: Option<String> },
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn accounts(admin: &AdminClient, cmd: AccountsCommand) -> anyhow::Result<()> {
    match cmd {
        AccountsCommand::Create { id, tier } => {
            let mut body = json!({"id": id});
            if let Some(t) = tier {
                body["tier"] = json!(t);
            }
            print(&admin.expect(Method::POST, "/admin/v1/accounts", Some(body)).await?);
        }
        AccountsCommand::List => {
            let v = admin.expect(Method::GET, "/admin/v1/accounts", None).await?;
            println!(
                "{:<24} {:<12} {:<10} {:>9} {:>12} {:>12}",
                "ID", "TIER", "STATUS", "REQUESTS", "PROMPT_TOK", "COMPL_TOK"
            );
            for a in v["accounts"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<12} {:<10} {:>9} {:>12} {:>12}",
                    a["id"].as_str().unwrap_or(""),
                    a["tier"].as_str().unwrap_or(""),
                    a["status"].as_str().unwrap_or(""),
                    a["usage"]["requests"].as_u64().unwrap_or(0),
                    a["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    a["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                );
            }
        }
        AccountsCommand::Show { id } => {
            print(&admin.expect(Method::GET, &format!("/admin/v1/accounts/{}", path_segment(&id)), None).await?);
        }
        AccountsCommand::Block { id, reason } => {
            let path = format!("/admin/v1/accounts/{}/block", path_segment(&id));
            print(&admin.expect(Method::POST, &path, Some(json!({"reason": reason}))).await?);
        }
        AccountsCommand::Unblock { id, reason } => {
            let path = format!("/admin/v1/accounts/{}/unblock", path_segment(&id));
            print(&admin.expect(Method::POST, &path, Some(json!({"reason": reason}))).await?);
        }
    }
    Ok(())
}

pub async fn keys(admin: &AdminClient, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create { account, key_only } => {
            let path = format!("/admin/v1/accounts/{}/keys", path_segment(&account));
            let v = admin.expect(Method::POST, &path, None).await?;
            if key_only {
                println!("{}", v["key"].as_str().unwrap_or_default());
            } else {
                print(&v);
            }
            eprintln!("Store the key now: it is shown only once.");
        }
        KeysCommand::List { account } => {
            let path = format!("/admin/v1/accounts/{}/keys", path_segment(&account));
            print(&admin.expect(Method::GET, &path, None).await?);
        }
        KeysCommand::Revoke { key_id } => {
            let path = format!("/admin/v1/keys/{}", path_segment(&key_id));
            admin.expect(Method::DELETE, &path, None).await?;
            println!("revoked {key_id}");
        }
    }
    Ok(())
}

pub async fn alerts(admin: &AdminClient, cmd: AlertsCommand) -> anyhow::Result<()> {
    match cmd {
        AlertsCommand::List { status, account, limit } => {
            let mut query = vec![format!("status={}", path_segment(status.as_deref().unwrap_or("open")))];
            if let Some(a) = account {
                query.push(format!("account={}", path_segment(&a)));
            }
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            let v = admin.expect(Method::GET, &format!("/admin/v1/alerts?{}", query.join("&")), None).await?;
            println!(
                "{:<22} {:<20} {:<8} {:>5} {:<9} {:<8} {:<24} ACCOUNTS",
                "ID", "KIND", "SEVERITY", "SCORE", "ACTION", "STATUS", "CREATED"
            );
            for a in v["alerts"].as_array().into_iter().flatten() {
                let members: Vec<&str> =
                    a["account_ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                let shown = if members.len() > 3 {
                    format!("{} (+{} more)", members[..3].join(","), members.len() - 3)
                } else {
                    members.join(",")
                };
                println!(
                    "{:<22} {:<20} {:<8} {:>5.2} {:<9} {:<8} {:<24} {}",
                    a["id"].as_str().unwrap_or(""),
                    a["kind"].as_str().unwrap_or(""),
                    a["severity"].as_str().unwrap_or(""),
                    a["score"].as_f64().unwrap_or(0.0),
                    a["action"].as_str().unwrap_or(""),
                    a["status"].as_str().unwrap_or(""),
                    a["created_at"].as_str().unwrap_or(""),
                    shown
                );
            }
        }
        AlertsCommand::Show { id } => {
            print(&admin.expect(Method::GET, &format!("/admin/v1/alerts/{}", path_segment(&id)), None).await?);
        }
        AlertsCommand::Resolve { id, verdict, note } => {
            let path = format!("/admin/v1/alerts/{}/resolve", path_segment(&id));
            print(&admin.expect(Method::POST, &path, Some(json!({"verdict": verdict, "note": note}))).await?);
        }
    }
    Ok(())
}
