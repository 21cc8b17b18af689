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

/// A Messages API request (Anthropic's dialect) that asks for the model's thinking.
fn thinking(account: &'static str, what: &'static str, prompt: &str, stream: bool) -> Step {
    Step {
        account,
        what,
        method: Method::POST,
        path: "/v1/messages",
        body: Some(json!({"model": "mock-small", "max_tokens": 1024, "stream": stream,
            "thinking": {"type": "enabled", "budget_tokens": 512},
            "messages": [{"role": "user", "content": prompt}]})),
        key_override: None,
    }
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
        # The audit log stays in the demo's data directory too (deleted at the end); it
        # keeps request bodies, so `warden backtest` can replay a kept-running demo.
        [audit]
        dir = "{audit}"
        capture = "full"
        [logging]
        format = "pretty"
        # The demo prints what happens itself; only errors go to the log.
        level = "error"
        [[tiers]]
        name = "default"
        requests_per_minute = 6000
        tokens_per_minute = 10000000
        # A plan whose responses never carry the model's reasoning.
        [[tiers]]
        name = "no-reasoning"
        requests_per_minute = 6000
        tokens_per_minute = 10000000
        reasoning = "strip"
        [detection]
        mode = "enforce"
        # The demo lasts seconds, not days: look for clusters every second.
        cluster_interval_secs = 1
        "#,
        upstream = mock.base_url(),
        db = data_dir.join("warden.db").display(),
        audit = data_dir.join("audit").display(),
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
    for (id, tier) in
        [("acme-chat", "default"), ("batch-co", "default"), ("mallory", "default"), ("lite-app", "no-reasoning")]
    {
        admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": id, "tier": tier}))).await?;
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
        thinking("acme-chat", "thinking", "Is 91 a prime number?", false),
        thinking("acme-chat", "thinking, stream", "Is 91 a prime number?", true),
        thinking("lite-app", "thinking", "Is 91 a prime number?", false),
        thinking("lite-app", "thinking, stream", "Is 91 a prime number?", true),
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
    /// Requests per round it is active in.
    per_round: usize,
    /// Active in the rounds where `(round + offset) % every == 0` (1: every round).
    every: usize,
    offset: usize,
    /// Its place among the accounts of one operator (the paraphrased hydra's wording).
    member: usize,
    /// The client's `User-Agent` header, if it sends one.
    user_agent: Option<&'static str>,
    key: String,
    sent: usize,
    ok: usize,
    refused: usize,
}

/// One request of a simulated account.
struct SimRequest {
    body: Value,
    /// How long the mock upstream's answer is (its `x-mock-chunks` header: one word is one
    /// completion token); None for its default, 16.
    answer_tokens: Option<u64>,
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

/// The paraphrased hydra: each member words the same reasoning-harvesting instruction its
/// own way (`{q}` is the question), so no two share a fixed prefix or suffix.
const PARAPHRASES: &[&str] = &[
    "Work through this problem and show every step of your working: {q}",
    "Solve {q} Lay out your full reasoning before giving the answer.",
    "{q} Think it through carefully and explain each stage of the calculation.",
    "Question: {q}\nBefore answering, reason through the problem one stage at a time.",
    "I need the complete derivation, not just the result. {q}",
    "{q} Please walk me through how you get there, one stage after another.",
    "Tutor mode: for the problem below, write out all the intermediate calculations and only then the answer.\n{q}",
    "{q} Show your thinking at each point, then state the answer on its own line.",
    "Explain, line by line, how to arrive at the answer to this: {q}",
    "Give a thorough worked solution to the following and justify every move. {q}",
];

const NAMES: &[&str] = &[
    "Amara", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kofi", "Lena", "Mateo",
    "Nadia", "Oskar", "Priya",
];
const ITEMS: &[&str] =
    &["lamp", "bicycle", "notebook", "umbrella", "kettle", "backpack", "jacket", "teapot", "chair", "clock", "radio"];

/// A word problem, different for every `i` (names, objects and numbers vary; each starts
/// and ends with a varying word, as a dataset's questions do).
fn word_problem(i: u64) -> String {
    let r = |salt: u64| splitmix(i.wrapping_mul(0x9e37_79b9).wrapping_add(salt));
    let n1 = NAMES[(r(1) % NAMES.len() as u64) as usize];
    let n2 = NAMES[((r(1) % NAMES.len() as u64 + 1 + r(2) % 15) % NAMES.len() as u64) as usize];
    let item = ITEMS[(r(3) % ITEMS.len() as u64) as usize];
    let (a, b, c) = (2 + r(4) % 40, 3 + r(5) % 60, 10 + r(6) % 400);
    match r(7) % 9 {
        0 => format!("{n1} buys {a} {item}s at {c} dollars each and pays with a {}-dollar note. How much change is due to {n1}?", a * c + b),
        1 => format!("{n1} drives {c} km at {} km/h and then {b} km at {} km/h. What is the average speed of {n1}?", 40 + a, 60 + b),
        2 => format!("{n1} reads {a} pages a day and the novel has {c} pages. How many days does the novel take {n1}?"),
        3 => format!("{n1} is {a} years older than {n2}, and in {b} years {n1} will be twice as old as {n2}. How old is {n2}?"),
        4 => format!("{n1} and {n2} paint a fence together; alone {n1} needs {a} hours and {n2} needs {b} hours. How long together for {n1} and {n2}?"),
        5 => format!("{n1} saves {a} dollars a week towards a {c}-dollar {item}. After how many weeks can {n1} afford the {item}?"),
        6 => format!("{n1}'s garden is {c} m long and {b} m wide. How much fencing does the garden of {n1} need?"),
        7 => format!("{n1} invests {c}0 dollars at {}% compounded yearly for {} years. What is the final balance for {n1}?", 1 + a % 9, 2 + b % 20),
        _ => format!("{n1} sells a {item} at a {a}% profit for {c} dollars. What did the {item} cost {n1}?"),
    }
}

/// Topics, audiences and angles of the round robin's dataset-like prompts.
const TOPICS: &[&str] = &[
    "photosynthesis",
    "the French Revolution",
    "plate tectonics",
    "compound interest",
    "the immune system",
    "black holes",
    "supply and demand",
    "the printing press",
    "machine translation",
    "coral reefs",
    "the water cycle",
    "inflation",
    "quantum entanglement",
    "the Roman Empire",
    "vaccination",
    "renewable energy",
    "the stock market",
    "DNA replication",
    "the Silk Road",
    "climate change",
    "game theory",
    "antibiotic resistance",
    "the Industrial Revolution",
    "volcanoes",
    "urban planning",
    "the human microbiome",
    "public key cryptography",
    "the Cold War",
    "sleep",
    "ocean currents",
    "the theory of evolution",
    "jazz",
    "impressionist painting",
    "the internet",
    "monetary policy",
    "honeybees",
    "glaciers",
    "the Renaissance",
    "nuclear fusion",
    "electric cars",
    "the placebo effect",
    "cloud computing",
    "the Great Depression",
    "rainforests",
    "cognitive biases",
    "the Moon landing",
    "tides",
];
const AUDIENCES: &[&str] = &[
    "a ten-year-old",
    "high school students",
    "a busy manager",
    "first-year university students",
    "retired engineers",
    "a curious teenager",
    "nurses in training",
    "small business owners",
    "a general audience",
    "policy makers",
    "museum visitors",
    "new immigrants",
];
const ANGLES: &[&str] = &[
    "its economic impact",
    "its history",
    "recent research",
    "everyday life",
    "developing countries",
    "the next twenty years",
    "public health",
    "ethics",
    "its environmental cost",
    "popular culture",
    "education",
    "national security",
    "common myths",
    "future careers",
    "local government",
    "sports",
];

/// The round robin's `i`-th prompt: a broad instruction, different every time, whose
/// first and last words vary (no fixed prefix or suffix).
fn dataset_prompt(i: u64) -> String {
    let r = |salt: u64| splitmix(i.wrapping_mul(0x5851_f42d).wrapping_add(salt));
    let t = TOPICS[(r(1) % TOPICS.len() as u64) as usize];
    let t2 = TOPICS[((r(1) % TOPICS.len() as u64 + 1 + r(2) % 40) % TOPICS.len() as u64) as usize];
    let u = AUDIENCES[(r(3) % AUDIENCES.len() as u64) as usize];
    let l = ANGLES[(r(4) % ANGLES.len() as u64) as usize];
    match r(5) % 14 {
        0 => format!("Explain {t} to {u}."),
        1 => format!("Summarise {t} for {u}."),
        2 => format!("Describe {t} and {l}."),
        3 => format!("Compare {t} with {t2}, focusing on {l}."),
        4 => format!("What is {t}, and how does it relate to {l}?"),
        5 => format!("Why does {t} matter for {u}?"),
        6 => format!("{t}: list five facts relevant to {l}."),
        7 => format!("{t}: give a short history, then discuss {l}."),
        8 => format!("Lesson plan on {t} for {u}."),
        9 => format!("Encyclopedia entry: {t}, covering {l}."),
        10 => format!("Is {t} overrated? Argue both sides for {u}."),
        11 => format!("Common misconceptions about {t} among {u}."),
        12 => format!("Tell me about {t} and {l}."),
        _ => format!("{t}: pros and cons for {u}."),
    }
}

/// Texts the translation product's users send: one to a dozen sentences.
const SENTENCES: &[&str] = &[
    "Thank you for your order.",
    "Your parcel will arrive within three to five working days.",
    "Please keep the receipt, as you will need it for any return or exchange within thirty days of purchase.",
    "The meeting has been moved to Thursday afternoon.",
    "We are delighted to invite you to the opening of our new store in the city centre, where refreshments will be served from six o'clock.",
    "The device must be switched off before the battery is removed.",
    "Our support team answers every message within one business day.",
    "Rooms are available from two o'clock and must be vacated by eleven on the day of departure.",
    "This medicine should be taken with food, twice a day, for no longer than one week unless a doctor advises otherwise.",
    "The museum is closed on Mondays.",
    "Children under twelve travel free when accompanied by an adult holding a valid ticket.",
    "Please find attached the minutes of last week's board meeting, together with the revised budget for the coming year.",
    "The train to Lyon is delayed by twenty minutes.",
    "Tighten the four screws evenly until the panel sits flush against the frame, then reconnect the power cable.",
    "We regret to inform you that the concert has been cancelled.",
    "Refunds are issued to the original payment method and usually appear on your statement within a week.",
    "The garden behind the house is full of roses in June.",
    "Applicants must submit a cover letter, a current curriculum vitae and the names of two referees before the end of the month.",
    "Dinner is served in the main hall.",
    "Our company was founded in a small workshop by two brothers who repaired bicycles and sewing machines for their neighbours.",
    "The warranty does not cover damage caused by water, fire or misuse.",
    "Please confirm your attendance by Friday.",
    "Heavy rain is expected along the coast tonight, and drivers are advised to avoid the mountain roads until the morning.",
    "The new library offers free wireless access to all visitors.",
];

/// The translation product's `i`-th text.
fn user_text(i: u64) -> String {
    let n = 1 + splitmix(i ^ 0xabcd) % 12;
    (0..n).map(|k| SENTENCES[(splitmix(i * 131 + k) % SENTENCES.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
}

/// A fixed 64-bit mixer (SplitMix64's finaliser): the simulation is the same on every run.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh, random-looking address for the round robin's `i`-th request: a new /24 each
/// time, as a residential proxy pool gives.
fn pool_address(i: u64) -> String {
    const FIRST: &[u8] = &[23, 31, 37, 45, 52, 62, 77, 81, 88, 91, 95, 109, 134, 141, 151, 176, 185, 188, 193, 212];
    let h = splitmix(i ^ 0x0070_6f6f_6c00);
    let first = FIRST[(h % FIRST.len() as u64) as usize];
    format!("{first}.{}.{}.{}", (h >> 8) & 0xff, (h >> 16) & 0xff, 1 + (h >> 24) % 254)
}

/// The `i`-th request of an account of kind `kind`; `member` tells the members of one
/// operator apart (the paraphrased hydra's wording).
fn sim_body(kind: &str, i: usize, member: usize) -> SimRequest {
    let q = QUESTIONS[i % QUESTIONS.len()];
    let user = |content: String| json!([{"role": "user", "content": content}]);
    let seed = (member as u64) << 32 | i as u64;
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
        "paraphrased" => {
            let wording = PARAPHRASES[member % PARAPHRASES.len()];
            user(wording.replace("{q}", &word_problem(seed)))
        }
        "round-robin" if i % 9 == 4 => {
            // Cover: now and then a follow-up, as a person chatting would send.
            let follow = ["Thanks! Can you make that shorter?", "ok, and in one sentence?", "could you add an example"];
            json!([
                {"role": "user", "content": dataset_prompt(i as u64)},
                {"role": "assistant", "content": "Here is an overview ..."},
                {"role": "user", "content": follow[i % follow.len()]},
            ])
        }
        "round-robin" => user(dataset_prompt(i as u64)),
        "translation" => json!([
            {"role": "system", "content": "You are the translation engine of Lingua, a document translation service \
                for small businesses. Translate the user's text faithfully into the requested language. Keep names, \
                numbers, formatting and tone; never add commentary, notes or explanations of your own."},
            {"role": "user", "content": format!("Translate into French:\n\n{}", user_text(i as u64))},
        ]),
        _ if i % 2 == 0 => user(format!("Answer the following question given this paragraph: {q} ({i})\n\nA:")),
        _ => user(format!("what's a good name for a {} shop?", ["coffee", "bike", "book", "flower"][i % 4])),
    };
    let mut body = json!({"model": "mock-small", "messages": messages, "max_tokens": 1024});
    let mut answer_tokens = None;
    match kind {
        "logprobs" => {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(10);
            body["n"] = json!(4);
            body["temperature"] = json!(1.0);
        }
        // One client, used the same way by every member: the same parameters (and, in
        // `simulate`, the same User-Agent). Worked solutions are long.
        "paraphrased" => {
            body["max_tokens"] = json!(2048);
            body["temperature"] = json!(0.7);
            answer_tokens = Some(250 + splitmix(seed ^ 0x51) % 500);
        }
        "round-robin" => {
            body["max_tokens"] = json!(4096);
            body["temperature"] = json!(0.9);
            answer_tokens = Some(150 + splitmix(i as u64 ^ 0x77) % 600);
        }
        // A translation is about as long as its text (French runs ~15% longer).
        "translation" => {
            body["max_tokens"] = json!(4096);
            body["temperature"] = json!(0.2);
            let words = user_text(i as u64).split_whitespace().count() as u64;
            answer_tokens = Some(words + words * (10 + splitmix(i as u64) % 10) / 100);
        }
        _ => {}
    }
    SimRequest { body, answer_tokens }
}

/// Sends one request of a simulated account from `ip`, and counts how it went.
async fn send_sim(http: &HttpClient, proxy: &str, s: &mut Sim, i: usize, ip: &str) -> anyhow::Result<()> {
    let req = sim_body(s.kind, i, s.member);
    let auth = format!("Bearer {}", s.key);
    let answer = req.answer_tokens.map(|n| n.to_string());
    let mut headers =
        vec![("authorization", auth.as_str()), ("content-type", "application/json"), ("x-forwarded-for", ip)];
    if let Some(ua) = s.user_agent {
        headers.push(("user-agent", ua));
    }
    if let Some(n) = &answer {
        headers.push(("x-mock-chunks", n.as_str()));
    }
    let reply = http
        .send(Method::POST, &format!("{proxy}/v1/chat/completions"), &headers, Some(Bytes::from(req.body.to_string())))
        .await?;
    s.sent += 1;
    if reply.status.is_success() {
        s.ok += 1;
    } else {
        s.refused += 1;
    }
    Ok(())
}

/// Rounds of simulated traffic.
const ROUNDS: usize = 50;
/// Requests the round robin's orchestrator sends per round, each from the next account.
const ROUND_ROBIN_PER_ROUND: usize = 4;

/// Benign and harvesting accounts send interleaved traffic; the detector works beside the
/// proxy and the demo prints its alerts and actions as they happen.
async fn simulate(http: &HttpClient, admin: &AdminClient, proxy: &str, tier: &Tier) -> anyhow::Result<()> {
    println!("\n  simulated traffic: benign and harvesting accounts, interleaved");
    let mut sims: Vec<Sim> = Vec::new();
    let add = |sims: &mut Vec<Sim>, id: String, kind: &'static str, ip: String, per_round: usize| {
        let member = sims.iter().filter(|s| s.kind == kind).count();
        sims.push(Sim {
            id,
            kind,
            ip,
            per_round,
            every: 1,
            offset: 0,
            member,
            user_agent: None,
            key: String::new(),
            sent: 0,
            ok: 0,
            refused: 0,
        });
        sims.len() - 1
    };
    add(&mut sims, "northwind".into(), "product", "192.0.2.10".into(), 6);
    add(&mut sims, "student-amy".into(), "student", "198.51.100.23".into(), 1);
    add(&mut sims, "distill-co".into(), "reasoning", "203.0.113.50".into(), 6);
    add(&mut sims, "lp-farm".into(), "logprobs", "203.0.113.99".into(), 4);
    // A translation product: a fixed persona over its users' texts, at volume; its
    // outputs are as long as its inputs.
    let s = add(&mut sims, "lingua".into(), "translation", "192.0.2.77".into(), 8);
    sims[s].user_agent = Some("lingua-backend/4.2");
    for h in 0..10 {
        // A "hydra": quiet accounts on one subnet sharing one template.
        add(&mut sims, format!("hydra-{h:02}"), "hydra", format!("100.64.7.{}", 10 + h), 1);
    }
    for h in 0..10 {
        // A paraphrased hydra: one script, each account on its own network with its own
        // wording of the instruction, each quiet: a request every other round, 25 in all
        // (just above the detector's `min_requests`).
        let ip = format!("100.{}.{}.{}", 72 + h, 3 * h + 11, 20 + h);
        let s = add(&mut sims, format!("para-{h:02}"), "paraphrased", ip, 1);
        (sims[s].every, sims[s].offset, sims[s].user_agent) = (2, h % 2, Some("python-requests/2.31.0"));
    }
    for h in 0..12 {
        // A round robin: one orchestrator sends each request from the next account, over
        // a proxy pool (below, not in the per-account loop).
        let s = add(&mut sims, format!("rr-{h:02}"), "round-robin", String::new(), 0);
        sims[s].user_agent = Some("aiohttp/3.9.5");
    }
    for s in sims.iter_mut() {
        admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": s.id, "tier": "default"}))).await?;
        let k = admin.expect(Method::POST, &format!("/admin/v1/accounts/{}/keys", s.id), None).await?;
        s.key = k["key"].as_str().unwrap_or_default().to_string();
    }
    let round_robin: Vec<usize> = (0..sims.len()).filter(|&i| sims[i].kind == "round-robin").collect();
    let mut rr_sent = 0usize;
    let mut seen = std::collections::HashMap::<String, String>::new();
    for round in 0..ROUNDS {
        for s in sims.iter_mut() {
            if (round + s.offset) % s.every != 0 {
                continue;
            }
            for j in 0..s.per_round {
                let i = round / s.every * s.per_round + j;
                let ip = s.ip.clone();
                send_sim(http, proxy, s, i, &ip).await?;
            }
        }
        for _ in 0..ROUND_ROBIN_PER_ROUND {
            let next = round_robin[rr_sent % round_robin.len()];
            send_sim(http, proxy, &mut sims[next], rr_sent, &pool_address(rr_sent as u64)).await?;
            rr_sent += 1;
        }
        // Brief pause so the detector's actions land between rounds, then report news.
        tokio::time::sleep(Duration::from_millis(30)).await;
        report_alerts(admin, &mut seen, &format!("round {round:>2}")).await?;
    }
    // The detector looks for clusters when a request arrives at least
    // `cluster_interval_secs` (1 s here) of event time after its last look. The rounds
    // take seconds, so wait one interval and send one more request: the last look then
    // sees all of the traffic.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let product = sims.iter().position(|s| s.kind == "product").expect("the product is simulated");
    let (i, ip) = (ROUNDS * sims[product].per_round, sims[product].ip.clone());
    send_sim(http, proxy, &mut sims[product], i, &ip).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    report_alerts(admin, &mut seen, "after 1s").await?;
    // Which alert caught each account: its cluster's or its own (merged alerts live on in
    // the alert that absorbed them).
    let alerts = admin.expect(Method::GET, "/admin/v1/alerts?status=all&limit=1000", None).await?;
    let mut caught = std::collections::HashMap::<String, Vec<String>>::new();
    for a in alerts["alerts"].as_array().into_iter().flatten().rev() {
        if a["status"] == "merged" {
            continue;
        }
        let what = match a["kind"].as_str() {
            Some("coordinated_cluster") => format!("cluster {}", a["id"].as_str().unwrap_or("")),
            Some("extraction") => "own alert".to_string(),
            other => other.unwrap_or("").to_string(),
        };
        for m in a["account_ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let list = caught.entry(m.to_string()).or_default();
            if !list.contains(&what) {
                list.push(what.clone());
            }
        }
    }
    println!("\n  where each simulated account ended up:");
    let mut table =
        Table::new(&["account", "profile", ">sent", ">ok", ">refused", "status", ">risk", "caught by", "limits now"]);
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
            caught.get(&s.id).map_or_else(|| "-".to_string(), |c| c.join(" + ")),
            limits,
        ]);
    }
    table.print();
    println!(
        "  (caught by: the alert naming the account: a coordinated_cluster alert (its id, as above)\n   \
         or its own extraction alert; - for none. refused: 403 once blocked, 429 over a limit.\n   \
         A throttled account keeps working at the lower rates shown; one that stays under them\n   \
         is throttled without a refusal.)"
    );
    Ok(())
}

/// Prints the alerts raised or changed since the last call (`seen`: each alert's score,
/// action and size when last printed), each line headed by `when`.
async fn report_alerts(
    admin: &AdminClient,
    seen: &mut std::collections::HashMap<String, String>,
    when: &str,
) -> anyhow::Result<()> {
    let alerts = admin.expect(Method::GET, "/admin/v1/alerts?status=all", None).await?;
    for a in alerts["alerts"].as_array().into_iter().flatten().rev() {
        let id = a["id"].as_str().unwrap_or("").to_string();
        let stamp = format!("{}/{}/{}", a["score"], a["action"], a["account_ids"].as_array().map_or(0, Vec::len));
        if seen.get(&id) == Some(&stamp) {
            continue;
        }
        let verb = if seen.contains_key(&id) { "updated" } else { "raised " };
        seen.insert(id.clone(), stamp);
        let members: Vec<&str> = a["account_ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
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
            "  [{when}] alert {verb} {} {:<19} score {:.2} action {:<8} accounts {}",
            id,
            a["kind"].as_str().unwrap_or(""),
            a["score"].as_f64().unwrap_or(0.0),
            a["action"].as_str().unwrap_or(""),
            members_text(&members)
        );
        println!("             evidence: {}", signals.join(", "));
    }
    Ok(())
}

/// An alert's accounts, in a line: the names when they are few, else how many.
fn members_text(members: &[&str]) -> String {
    if members.len() > 3 {
        format!("{} members", members.len())
    } else {
        members.join(",")
    }
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
/// What the demo says of a Messages answer that asked for thinking and got none.
fn stripped_note(blocks: &[&str]) -> &'static str {
    if blocks.contains(&"thinking") {
        ""
    } else {
        "  (thinking stripped by the tier: reasoning = \"strip\"; usage counted in full)"
    }
}

fn describe(v: &Value, text: &str, ok: bool) -> (String, String) {
    if !ok {
        return (
            "-".into(),
            format!("{}: {}", v["error"]["code"].as_str().unwrap_or("?"), v["error"]["message"].as_str().unwrap_or("")),
        );
    }
    if text.starts_with("event:") {
        // A Messages stream: the blocks it carried, and the usage of its last delta.
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .collect();
        let input = events.iter().find_map(|e| e["message"]["usage"]["input_tokens"].as_u64());
        let output = events.iter().rev().find_map(|e| e["usage"]["output_tokens"].as_u64());
        let tokens = match (input, output) {
            (Some(p), Some(c)) => format!("{p}/{c}"),
            _ => "-".into(),
        };
        let blocks: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .filter_map(|e| e["content_block"]["type"].as_str())
            .collect();
        return (tokens, format!("{} events, blocks: {}{}", events.len(), blocks.join(" + "), stripped_note(&blocks)));
    }
    if v["type"] == "message" {
        let tokens = match (v["usage"]["input_tokens"].as_u64(), v["usage"]["output_tokens"].as_u64()) {
            (Some(p), Some(c)) => format!("{p}/{c}"),
            _ => "-".into(),
        };
        let blocks: Vec<&str> =
            v["content"].as_array().into_iter().flatten().filter_map(|b| b["type"].as_str()).collect();
        return (tokens, format!("blocks: {}{}", blocks.join(" + "), stripped_note(&blocks)));
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
