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
use crate::config::{Config, Tier};
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
        body: Some(if stream {
            json!({"model": "mock-small", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": prompt}]})
        } else {
            json!({"model": "mock-small", "messages": [{"role": "user", "content": prompt}]})
        }),
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
        trusted_proxies = ["127.0.0.1"]
        [upstream]
        base_url = "{upstream}"
        api_key_env = "DEMO_UPSTREAM_KEY"
        [admin]
        token_env = "DEMO_ADMIN_TOKEN"
        [storage]
        path = "{db}"
        [logging]
        format = "pretty"
        # The demo prints what happens itself; only errors go to the log.
        level = "error"
        [[tiers]]
        name = "default"
        requests_per_minute = 6000
        tokens_per_minute = 10000000
        [detection]
        mode = "enforce"
        # The demo lasts seconds, not days: look for clusters every second.
        cluster_interval_secs = 1
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
    if opts.keep_running {
        println!("  review dashboard   http://{admin_addr}/dashboard/  (token below, at the end)");
        println!("  data directory     {}  (deleted when the demo stops)\n", data_dir.display());
    } else {
        println!("  data directory     {}  (temporary: deleted at the end)", data_dir.display());
        println!("  (everything stops at the end; `warden demo --keep-running` leaves it up to explore)\n");
    }

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
    println!("\n  a short mix of requests through the proxy:");
    println!("  (tokens: prompt/completion as the reply's `usage` gives them; - where it has none)\n");
    println!("  {:<3} {:<10} {:<16} {:<24} {:>6} {:>9}  note", "#", "account", "what", "path", "status", "tokens");
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
                "  {:<3} {:<10} {:<16} {:<24} {:>6} {:>9}  {}",
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

    let tier = app.config().tier("default").cloned().expect("the demo config has a default tier");
    simulate(&http, &admin, &format!("http://{proxy_addr}"), &tier).await?;

    // Let the last streamed responses finish their accounting before reading totals.
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("\n  per-account totals from the admin API (GET /admin/v1/accounts):");
    let accounts = admin.expect(Method::GET, "/admin/v1/accounts", None).await?;
    let mut totals = Table::new(&["account", "status", ">requests", ">prompt tokens", ">completion tokens"]);
    for a in accounts["accounts"].as_array().into_iter().flatten() {
        totals.row(vec![
            a["id"].as_str().unwrap_or("").to_string(),
            a["status"].as_str().unwrap_or("").to_string(),
            a["usage"]["requests"].as_u64().unwrap_or(0).to_string(),
            a["usage"]["prompt_tokens"].as_u64().unwrap_or(0).to_string(),
            a["usage"]["completion_tokens"].as_u64().unwrap_or(0).to_string(),
        ]);
    }
    totals.print();

    if opts.keep_running {
        let alerts = admin.expect(Method::GET, "/admin/v1/alerts?status=all&limit=1", None).await?;
        let alert = alerts["alerts"][0]["id"].as_str().unwrap_or("ALERT_ID").to_string();
        let key = keys["acme-chat"].clone();
        println!("{}", ready_commands(&warden_command(), proxy_addr, admin_addr, &admin_token, &key, &alert));
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

/// One simulated account of the detection phase.
struct Sim {
    id: String,
    kind: &'static str,
    /// Client address (warden sits behind a trusted proxy that sets X-Forwarded-For).
    ip: String,
    per_round: usize,
    key: String,
    sent: usize,
    ok: usize,
    refused: usize,
}

const QUESTIONS: &[&str] = &[
    "A baker makes 24 loaves and sells 3/4 of them. How many are left?",
    "Tom has twice as many marbles as Ann, who has 17. How many do they have together?",
    "A car travels 180 km in 2.5 hours. What is its average speed?",
    "If 5 pencils cost 1.25 dollars, how much do 18 pencils cost?",
    "A tank holds 350 litres and leaks 12 litres an hour. When is it half empty?",
    "Write a short poem about the sea.",
    "Explain how vaccines train the immune system.",
    "Give three tips for a job interview.",
];

fn sim_body(kind: &str, i: usize) -> Value {
    let q = QUESTIONS[i % QUESTIONS.len()];
    let user = |content: String| json!([{"role": "user", "content": content}]);
    let messages = match kind {
        "product" => json!([
            {"role": "system", "content": "You are the help-desk assistant of Northwind Traders. Answer questions \
                about orders, shipping and returns politely and briefly; escalate legal questions."},
            {"role": "user", "content": format!("Hi, my order {} has not arrived", 1000 + i * 7)},
            {"role": "assistant", "content": "Sorry to hear that. Could you share your postcode?"},
            {"role": "user", "content": format!("Sure, it's {}.", 10_000 + i * 13)},
        ]),
        "student" => json!([
            {"role": "user", "content": format!("Can you explain step by step how to solve this? {q}")},
            {"role": "assistant", "content": "First, ..."},
            {"role": "user", "content": "why did you divide there?"},
        ]),
        "reasoning" => {
            user(format!("{q} (item {i}) Please reason step by step, and put your final answer within \\boxed{{}}."))
        }
        "logprobs" => user(format!("{q} (variant {i})")),
        _ if i % 2 == 0 => user(format!("Answer the following question given this paragraph: {q} ({i})\n\nA:")),
        _ => user(format!("what's a good name for a {} shop?", ["coffee", "bike", "book", "flower"][i % 4])),
    };
    let mut body = json!({"model": "mock-small", "messages": messages, "max_tokens": 1024});
    if kind == "logprobs" {
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(10);
        body["n"] = json!(4);
        body["temperature"] = json!(1.0);
    }
    body
}

/// Benign and harvesting accounts send interleaved traffic; the detector works beside the
/// proxy and the demo prints its alerts and actions as they happen.
async fn simulate(http: &HttpClient, admin: &AdminClient, proxy: &str, tier: &Tier) -> anyhow::Result<()> {
    println!("\n  simulated traffic: benign and harvesting accounts, interleaved");
    let mut sims = Vec::new();
    let mut add = |id: String, kind: &'static str, ip: String, per_round: usize| {
        sims.push(Sim { id, kind, ip, per_round, key: String::new(), sent: 0, ok: 0, refused: 0 })
    };
    add("northwind".into(), "product", "192.0.2.10".into(), 6);
    add("student-amy".into(), "student", "198.51.100.23".into(), 1);
    add("distill-co".into(), "reasoning", "203.0.113.50".into(), 6);
    add("lp-farm".into(), "logprobs", "203.0.113.99".into(), 4);
    for h in 0..10 {
        // A "hydra": quiet accounts on one subnet sharing one template.
        add(format!("hydra-{h:02}"), "hydra", format!("100.64.7.{}", 10 + h), 1);
    }
    for s in sims.iter_mut() {
        admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": s.id, "tier": "default"}))).await?;
        let k = admin.expect(Method::POST, &format!("/admin/v1/accounts/{}/keys", s.id), None).await?;
        s.key = k["key"].as_str().unwrap_or_default().to_string();
    }
    let mut seen = std::collections::HashMap::<String, String>::new();
    for round in 0..50 {
        for s in sims.iter_mut() {
            for j in 0..s.per_round {
                let i = round * s.per_round + j;
                let auth = format!("Bearer {}", s.key);
                let reply = http
                    .send(
                        Method::POST,
                        &format!("{proxy}/v1/chat/completions"),
                        &[("authorization", &auth), ("content-type", "application/json"), ("x-forwarded-for", &s.ip)],
                        Some(Bytes::from(sim_body(s.kind, i).to_string())),
                    )
                    .await?;
                s.sent += 1;
                if reply.status.is_success() {
                    s.ok += 1;
                } else {
                    s.refused += 1;
                }
            }
        }
        // Brief pause so the detector's actions land between rounds, then report news.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let alerts = admin.expect(Method::GET, "/admin/v1/alerts?status=all", None).await?;
        for a in alerts["alerts"].as_array().into_iter().flatten().rev() {
            let id = a["id"].as_str().unwrap_or("").to_string();
            let stamp = format!("{}/{}/{}", a["score"], a["action"], a["account_ids"].as_array().map_or(0, Vec::len));
            if seen.get(&id) == Some(&stamp) {
                continue;
            }
            let verb = if seen.contains_key(&id) { "updated" } else { "raised " };
            seen.insert(id.clone(), stamp);
            let members: Vec<&str> =
                a["account_ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let signals: Vec<String> = match a["evidence"]["signals"].as_array() {
                Some(sig) => sig
                    .iter()
                    .filter(|s| s["contribution"].as_f64().unwrap_or(0.0) > 0.0)
                    .map(|s| format!("{}={}", s["name"].as_str().unwrap_or(""), s["value"]))
                    .collect(),
                None => a["evidence"]["features"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|f| f["contribution"].as_f64().unwrap_or(0.0) > 0.0)
                    .map(|f| format!("{}={}", f["name"].as_str().unwrap_or(""), f["value"]))
                    .collect(),
            };
            println!(
                "  [round {round:>2}] alert {verb} {} {:<19} score {:.2} action {:<8} accounts {}",
                id,
                a["kind"].as_str().unwrap_or(""),
                a["score"].as_f64().unwrap_or(0.0),
                a["action"].as_str().unwrap_or(""),
                if members.len() > 3 { format!("{} members", members.len()) } else { members.join(",") }
            );
            println!("             evidence: {}", signals.join(", "));
        }
    }
    println!("\n  where each simulated account ended up:");
    let mut table = Table::new(&["account", "profile", ">sent", ">ok", ">refused", "status", ">risk", "limits now"]);
    let (rpm, tpm) = (tier.limits.requests_per_minute, tier.limits.tokens_per_minute);
    let rate = |v: Option<u64>, factor: f64, unit: &str| match v {
        Some(v) => format!("{} {unit}/min", ((v as f64 * factor).floor() as u64).max(1)),
        None => format!("unlimited {unit}"),
    };
    for s in &sims {
        let a = admin.expect(Method::GET, &format!("/admin/v1/accounts/{}", s.id), None).await?;
        let status = a["status"].as_str().unwrap_or("").to_string();
        let limits = match status.as_str() {
            "blocked" => "none: every request gets 403".to_string(),
            "throttled" => format!(
                "{}, {} (×{} of the tier's)",
                rate(rpm, tier.throttle_factor, "requests"),
                rate(tpm, tier.throttle_factor, "tokens"),
                tier.throttle_factor
            ),
            _ => format!("{}, {} (the tier's)", rate(rpm, 1.0, "requests"), rate(tpm, 1.0, "tokens")),
        };
        table.row(vec![
            s.id.clone(),
            s.kind.to_string(),
            s.sent.to_string(),
            s.ok.to_string(),
            s.refused.to_string(),
            status,
            format!("{:.2}", a["risk_score"].as_f64().unwrap_or(0.0)),
            limits,
        ]);
    }
    table.print();
    println!(
        "  (refused: 403 once blocked, 429 over a limit. A throttled account keeps working at the\n   \
         lower rates shown; one that stays under them is throttled without a refusal.)"
    );
    Ok(())
}

/// The block `--keep-running` prints: commands that work as pasted, in another terminal,
/// while the demo runs. Between the marker lines, every line that does not start with `#`
/// is a shell command (a test runs them).
pub fn ready_commands(
    warden: &str,
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    token: &str,
    key: &str,
    alert: &str,
) -> String {
    format!(
        "\n  still running. In another terminal:\n\n\
         ---- ready commands ----\n\
         # the CLI talks to this demo's admin API\n\
         export WARDEN_ADMIN_URL=http://{admin} WARDEN_ADMIN_TOKEN={token}\n\
         {warden} alerts list\n\
         {warden} alerts show {alert}\n\
         {warden} accounts show distill-co\n\
         # a request as the account acme-chat (its demo key)\n\
         curl -sS http://{proxy}/v1/chat/completions -H 'authorization: Bearer {key}' -H 'content-type: application/json' -d '{{\"model\":\"mock-small\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'\n\
         curl -sS http://{admin}/metrics\n\
         ---- end ----\n\n\
         \x20 review dashboard (token in the link): http://{admin}/dashboard/#token={token}&actor=you\n\
         \x20 Ctrl-C stops the demo and deletes its data."
    )
}

/// How to call this binary from a shell: `warden` if that is what PATH finds, else its path.
fn warden_command() -> String {
    let me = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|d| d.join("warden")).find(|p| p.is_file()).and_then(|p| p.canonicalize().ok())
    });
    match (me, on_path) {
        (Some(me), Some(found)) if me == found => "warden".into(),
        (Some(me), _) => me.display().to_string(),
        (None, _) => "warden".into(),
    }
}

/// A table printed with each column as wide as its widest cell; a heading that starts
/// with `>` is right-aligned.
struct Table {
    heads: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(heads: &[&str]) -> Table {
        let heads = heads
            .iter()
            .map(|h| match h.strip_prefix('>') {
                Some(h) => (h.to_string(), true),
                None => (h.to_string(), false),
            })
            .collect();
        Table { heads, rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.heads.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain([self.heads[i].0.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let mut out = String::from(" ");
            for (i, c) in cells.iter().enumerate() {
                let (w, right) = (widths[i], self.heads[i].1);
                let pad = " ".repeat(w.saturating_sub(c.chars().count()));
                out.push(' ');
                if right {
                    out.push_str(&pad);
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    if i + 1 < cells.len() {
                        out.push_str(&pad);
                    }
                }
            }
            out
        };
        let mut text = line(self.heads.iter().map(|(h, _)| h.as_str()).collect());
        for r in &self.rows {
            text.push('\n');
            text.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        text
    }

    fn print(&self) {
        println!("{}", self.render());
    }
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
        // The usage chunk the stream ends with (asked for with stream_options.include_usage).
        let usage = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|c| c["usage"].is_object());
        let tokens = match usage {
            Some(c) => format!(
                "{}/{}",
                c["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                c["usage"]["completion_tokens"].as_u64().unwrap_or(0)
            ),
            None => "-".into(),
        };
        return (tokens, format!("{chunks} SSE chunks streamed as they came"));
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
