//! `warden demo`: everything embedded, on loopback, in one command. Starts the mock LLM
//! upstream, warden (proxy + admin listener) on a temporary data directory, creates a few
//! accounts through the admin API, sends a short mix of traffic and prints what happened.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use rand::RngCore;
use serde_json::{json, Value};

use crate::app::App;
use crate::client::{AdminClient, HttpClient};
use crate::config::Config;
use crate::mock_llm::{self, MockOptions};
use crate::server::{self, Listeners};

pub struct DemoOptions {
    /// Keep everything running after the traffic, until Ctrl-C.
    pub keep_running: bool,
}

/// One request of the scripted mix.
struct Step {
    account: &'static str,
    what: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// Use this raw key instead of the account's.
    key_override: Option<&'static str>,
}

fn chat(account: &'static str, what: &'static str, prompt: &str, stream: bool) -> Step {
    Step {
        account,
        what,
        method: Method::POST,
        path: "/v1/chat/completions",
        body: Some(json!({"model": "mock-small", "stream": stream,
            "messages": [{"role": "user", "content": prompt}]})),
        key_override: None,
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let mock =
        mock_llm::spawn(MockOptions { chunk_interval: Duration::from_millis(5), ..MockOptions::default() }).await?;

    let mut token_bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut token_bytes);
    let admin_token = hex::encode(token_bytes);
    let data_dir = std::env::temp_dir().join(format!("warden-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let toml = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        [upstream]
        base_url = "{upstream}"
        api_key_env = "DEMO_UPSTREAM_KEY"
        [admin]
        token_env = "DEMO_ADMIN_TOKEN"
        [storage]
        path = "{db}"
        [logging]
        format = "pretty"
        level = "warn"
        [[tiers]]
        name = "default"
        requests_per_minute = 60
        tokens_per_minute = 100000
        "#,
        upstream = mock.base_url(),
        db = data_dir.join("warden.db").display(),
    );
    let env = |name: &str| match name {
        "DEMO_UPSTREAM_KEY" => Some("sk-demo-upstream".to_string()),
        "DEMO_ADMIN_TOKEN" => Some(admin_token.clone()),
        _ => None,
    };
    let config = Config::from_toml(&toml, &env).map_err(|e| anyhow::anyhow!("demo config is invalid:\n{e}"))?;
    let _log = crate::telemetry::init(&config.logging);
    let listeners = Listeners::bind(config.server.listen, config.server.admin_listen).await?;
    let (proxy_addr, admin_addr) = (listeners.proxy_addr(), listeners.admin_addr());
    let app = Arc::new(App::build(config).await?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(app.clone(), listeners, async {
        let _ = stop_rx.await;
    }));

    println!("warden demo: everything embedded, on loopback\n");
    println!("  mock LLM upstream  {}", mock.base_url());
    println!("  proxy              http://{proxy_addr}");
    println!("  admin API          http://{admin_addr}");
    println!("  data directory     {}\n", data_dir.display());

    let admin = AdminClient::new(&format!("http://{admin_addr}"), &admin_token, "demo");
    let mut keys = std::collections::HashMap::new();
    for id in ["acme-chat", "batch-co", "mallory"] {
        admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": id, "tier": "default"}))).await?;
        let k = admin.expect(Method::POST, &format!("/admin/v1/accounts/{id}/keys"), None).await?;
        keys.insert(id, k["key"].as_str().unwrap_or_default().to_string());
        println!("  created account {id:<10} key_id {}", k["key_id"].as_str().unwrap_or(""));
    }

    let steps = vec![
        chat("acme-chat", "chat", "What is the capital of France?", false),
        chat("acme-chat", "chat, streamed", "Write a haiku about proxies.", true),
        Step {
            account: "acme-chat",
            what: "list models",
            method: Method::GET,
            path: "/v1/models",
            body: None,
            key_override: None,
        },
        Step {
            account: "batch-co",
            what: "embeddings",
            method: Method::POST,
            path: "/v1/embeddings",
            body: Some(json!({"model": "mock-embed", "input": ["first document", "second document"]})),
            key_override: None,
        },
        Step {
            account: "batch-co",
            what: "completion",
            method: Method::POST,
            path: "/v1/completions",
            body: Some(json!({"model": "mock-small", "prompt": "Summarise: the quick brown fox", "max_tokens": 8})),
            key_override: None,
        },
        chat("mallory", "chat, streamed", "Explain step by step how tides work.", true),
        Step {
            account: "mallory",
            what: "unknown key",
            method: Method::POST,
            path: "/v1/chat/completions",
            body: Some(json!({"model": "mock-small", "messages": []})),
            key_override: Some("wk-not-a-real-key"),
        },
        Step {
            account: "acme-chat",
            what: "malformed JSON",
            method: Method::POST,
            path: "/v1/chat/completions",
            body: None,
            key_override: None,
        },
    ];

    let http = HttpClient::new();
    println!(
        "\n  {:<3} {:<10} {:<16} {:<24} {:>6} {:>14}  note",
        "#", "account", "what", "path", "status", "tokens p/c"
    );
    let mut n = 0;
    let mut run_step = |step: Step| {
        n += 1;
        let key = step.key_override.map(str::to_string).unwrap_or_else(|| keys[step.account].clone());
        let http = http.clone();
        let proxy = format!("http://{proxy_addr}{}", step.path);
        async move {
            let auth = format!("Bearer {key}");
            let body = match (&step.body, step.what) {
                (_, "malformed JSON") => Some(Bytes::from_static(b"{\"model\": \"mock-small\", \"messages\": [")),
                (Some(b), _) => Some(Bytes::from(b.to_string())),
                (None, _) => None,
            };
            let reply = http
                .send(
                    step.method.clone(),
                    &proxy,
                    &[("authorization", &auth), ("content-type", "application/json")],
                    body,
                )
                .await?;
            let text = String::from_utf8_lossy(&reply.body).to_string();
            let (tokens, note) = describe(&reply.json(), &text, reply.status.is_success());
            println!(
                "  {:<3} {:<10} {:<16} {:<24} {:>6} {:>14}  {}",
                n,
                step.account,
                step.what,
                step.path,
                reply.status.as_u16(),
                tokens,
                note
            );
            anyhow::Ok(())
        }
    };
    for step in steps {
        run_step(step).await?;
    }

    // A reviewer blocks mallory: the very next request is refused.
    admin
        .expect(Method::POST, "/admin/v1/accounts/mallory/block", Some(json!({"reason": "demo: suspected harvesting"})))
        .await?;
    println!("\n  reviewer blocked `mallory` (reason recorded); its next request:");
    run_step(chat("mallory", "chat", "One more question.", false)).await?;

    // Let the last streamed responses finish their accounting before reading totals.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("\n  per-account totals from the admin API:");
    println!("  {:<10} {:<8} {:>9} {:>12} {:>12}", "account", "status", "requests", "prompt tok", "compl. tok");
    let accounts = admin.expect(Method::GET, "/admin/v1/accounts", None).await?;
    for a in accounts["accounts"].as_array().into_iter().flatten() {
        println!(
            "  {:<10} {:<8} {:>9} {:>12} {:>12}",
            a["id"].as_str().unwrap_or(""),
            a["status"].as_str().unwrap_or(""),
            a["usage"]["requests"].as_u64().unwrap_or(0),
            a["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            a["usage"]["completion_tokens"].as_u64().unwrap_or(0)
        );
    }

    if opts.keep_running {
        println!(
            "\n  still running; admin token: {admin_token}\n  try: curl http://{admin_addr}/metrics\n  Ctrl-C to stop."
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    app.shutdown().await;
    mock.shutdown();
    let _ = std::fs::remove_dir_all(&data_dir);
    println!("\n  demo finished; warden shut down gracefully.");
    Ok(())
}

/// Tokens and a short note for one reply of the demo.
fn describe(v: &Value, text: &str, ok: bool) -> (String, String) {
    if !ok {
        return (
            "-".into(),
            format!("{}: {}", v["error"]["code"].as_str().unwrap_or("?"), v["error"]["message"].as_str().unwrap_or("")),
        );
    }
    if text.starts_with("data:") {
        let chunks = text.matches("data: {").count();
        return ("(counted)".into(), format!("{chunks} SSE chunks streamed"));
    }
    let usage = &v["usage"];
    let tokens = match (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()) {
        (Some(p), Some(c)) => format!("{p}/{c}"),
        (Some(p), None) => format!("{p}/0"),
        _ => "-".into(),
    };
    let note = if let Some(c) = v["choices"][0]["message"]["content"].as_str() {
        format!("\"{}\"", c.chars().take(40).collect::<String>().trim())
    } else if let Some(c) = v["choices"][0]["text"].as_str() {
        format!("\"{}\"", c.chars().take(40).collect::<String>().trim())
    } else if let Some(d) = v["data"].as_array() {
        format!("{} items", d.len())
    } else {
        String::new()
    };
    (tokens, note)
}
