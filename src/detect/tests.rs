//! Engine tests on synthetic streams with controlled timestamps.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::config::{DetectConfig, Mode, RawDetection};
use super::*;

const T0: i64 = 1_793_577_600_000; // 2026-11-01T00:00:00Z

struct Req {
    ts_ms: i64,
    account: String,
    ip: &'static str,
    body: Map<String, Value>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

fn chat(messages: Value, extra: Value) -> Map<String, Value> {
    let mut m = json!({"model": "gpt-4o-mini", "messages": messages}).as_object().unwrap().clone();
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    m
}

fn request_of(body: &Map<String, Value>) -> crate::llm::LlmRequest {
    let bytes = serde_json::to_vec(body).unwrap();
    crate::llm::LlmRequest::parse(crate::llm::LlmRoute::ChatCompletions, &bytes).unwrap()
}

fn feed(engine: &mut Engine, reqs: &[Req]) -> Vec<AlertChange> {
    let mut out = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let id = format!("r{i}");
        let obs = Observation {
            ts_ms: r.ts_ms,
            request_id: &id,
            account_id: &r.account,
            client_ip: r.ip.parse().ok(),
            user_agent: Some("OpenAI/Python 1.54.0"),
            path: "/v1/chat/completions",
            status: 200,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            features: features::extract("/v1/chat/completions", Some(&request_of(&r.body))),
        };
        out.extend(engine.observe(&obs));
    }
    out
}

fn engine() -> Engine {
    Engine::new(Arc::new(DetectConfig::default()))
}

const TOPICS: &[&str] = &[
    "a farmer sells 17 eggs at 3 dollars each and buys 4 hens",
    "a train leaves at 9 and travels 120 km at 80 km per hour",
    "Mia has 45 stickers and gives a third to her brother",
    "a rectangle is 12 m long and 7 m wide; what is its area",
    "John reads 30 pages a day for 2 weeks and then 10 more",
    "a shop discounts a 60 dollar coat by 15 percent",
];

const WORDS: &[&str] = &[
    "meeting",
    "notes",
    "from",
    "our",
    "quarterly",
    "review",
    "please",
    "invoice",
    "customer",
    "refund",
    "product",
    "launch",
    "email",
    "draft",
    "blog",
    "post",
    "about",
    "hiring",
    "remote",
    "team",
    "policy",
    "update",
    "weekly",
    "newsletter",
    "summary",
    "apology",
    "delay",
    "shipping",
    "partner",
    "proposal",
    "budget",
    "travel",
    "request",
    "onboarding",
    "guide",
    "feedback",
    "survey",
    "results",
    "holiday",
    "schedule",
];

/// End-user text of a product: varied openings, lengths and wording.
fn varied(i: usize) -> String {
    let n = 6 + i * 31 % 20;
    (0..n).map(|k| WORDS[(i * 7919 + k * 104_729 + k * k * 13) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

fn question(i: usize) -> String {
    format!("{} (case {i}, variant {})", TOPICS[i % TOPICS.len()], i * 7919 % 1000)
}

/// A reasoning-trace harvester: fixed CoT suffix, every 20 s, around the clock.
fn reasoning_harvester(account: &str, n: usize) -> Vec<Req> {
    (0..n)
        .map(|i| Req {
            ts_ms: T0 + i as i64 * 20_000 + (i as i64 * 37 % 5) * 100,
            account: account.into(),
            ip: "198.51.100.7",
            body: chat(
                json!([{"role": "user", "content": format!("{} Please reason step by step, and put your final answer within \\boxed{{}}.", question(i))}]),
                json!({"max_tokens": 4096, "temperature": 0.6}),
            ),
            prompt_tokens: 60,
            completion_tokens: 700,
        })
        .collect()
}

#[test]
fn reasoning_harvester_is_flagged_with_evidence() {
    let mut e = engine();
    let changes = feed(&mut e, &reasoning_harvester("harvester", 400));
    let first = changes.iter().find(|c| c.created).expect("an alert");
    assert_eq!(first.alert.kind, AlertKind::Extraction);
    assert_eq!(first.alert.account_ids, vec!["harvester".to_string()]);
    let requests = first.alert.evidence["requests"].as_u64().unwrap();
    assert!(requests <= 200, "flagged after {requests} requests");
    let fired: Vec<&str> =
        first.alert.evidence["signals"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(fired.contains(&"reasoning_elicitation"), "{fired:?}");
    assert!(!first.alert.evidence["samples"].as_array().unwrap().is_empty());
    // Deduplicated: one open alert, later changes are updates.
    assert_eq!(changes.iter().filter(|c| c.created).count(), 1);
}

#[test]
fn student_asking_for_steps_at_human_pace_is_not_flagged() {
    let mut e = engine();
    let mut reqs = Vec::new();
    let mut t = T0 + 9 * 3_600_000;
    for i in 0..300 {
        // A few questions per evening, follow-ups in conversation, days apart.
        t += if i % 6 == 0 { 20 * 3_600_000 } else { 60_000 + (i as i64 * 7_919 % 400) * 1_000 };
        // A follow-up resends the conversation it continues (the opener sent before it).
        let first = format!("Can you explain step by step how to solve this? {}", question(i / 3 * 3));
        let messages = if i % 3 == 0 {
            json!([{"role": "user", "content": first}])
        } else {
            json!([{"role": "user", "content": first}, {"role": "assistant", "content": "First, ..."},
                   {"role": "user", "content": "why did you multiply there?"}])
        };
        reqs.push(Req {
            ts_ms: t,
            account: "student".into(),
            ip: "203.0.113.9",
            body: chat(messages, json!({})),
            prompt_tokens: 80,
            completion_tokens: 300,
        });
    }
    let changes = feed(&mut e, &reqs);
    assert!(changes.is_empty(), "{:?}", changes.first().map(|c| &c.alert.evidence));
}

#[test]
fn only_a_conversation_the_account_held_counts_as_one() {
    let mut e = engine();
    let mut reqs = Vec::new();
    for i in 0..60usize {
        let t = T0 + i as i64 * 90_000;
        let q = format!("Explain how {} works, in detail (part {i})", TOPICS[i % TOPICS.len()]);
        // A person: an opener, then two follow-ups that resend it.
        let opener = format!("Explain how {} works, in detail", TOPICS[i / 3 * 3 % TOPICS.len()]);
        let person = if i % 3 == 0 {
            json!([{"role": "user", "content": opener}])
        } else {
            json!([{"role": "user", "content": opener}, {"role": "assistant", "content": "Sure: ..."},
                   {"role": "user", "content": format!("and what about case {i}?")}])
        };
        // A harvester: small talk it never sent, made up in front of every new question.
        let disguised = json!([{"role": "user", "content": format!("hey there, quick one ({i})")},
                               {"role": "assistant", "content": "Of course, ask away."},
                               {"role": "user", "content": q}]);
        for (account, messages) in [("person", person), ("disguised", disguised)] {
            reqs.push(Req {
                ts_ms: t,
                account: account.into(),
                ip: "203.0.113.9",
                body: chat(messages, json!({})),
                prompt_tokens: 40,
                completion_tokens: 400,
            });
        }
    }
    feed(&mut e, &reqs);
    let lone = |id: &str| e.account(id).unwrap().single_turn_share();
    assert!(lone("person") < 0.4, "the person's follow-ups continue what it sent: {}", lone("person"));
    assert!(lone("disguised") > 0.95, "made-up histories are lone requests: {}", lone("disguised"));
    // The bodies' own word is kept beside it.
    assert_eq!(e.account("disguised").unwrap().raw_single_turn_share(), 0.0);
}

#[test]
fn product_with_fixed_system_prompt_is_not_flagged() {
    let mut e = engine();
    let system = "You are Acme Writer, a writing assistant for the Acme docs platform. Keep the user's tone, \
                  fix grammar, never invent facts, answer in the user's language.";
    let reqs: Vec<Req> = (0..3000)
        .map(|i| Req {
            // Poisson-like arrivals: gaps from a fixed pseudo-random sequence, mean ~10 s.
            ts_ms: T0
                + (0..i)
                    .map(|j| (((j * 7919 % 1000) as f64 / 1000.0 + 0.0005).ln().abs() * 30_000.0) as i64)
                    .sum::<i64>(),
            account: "acme".into(),
            ip: "192.0.2.10",
            body: chat(
                json!([{"role": "system", "content": system}, {"role": "user", "content": varied(i)}]),
                json!({"temperature": 0.7}),
            ),
            prompt_tokens: 90,
            completion_tokens: 80,
        })
        .collect();
    let changes = feed(&mut e, &reqs);
    assert!(changes.is_empty(), "{:?}", changes.first().map(|c| &c.alert.evidence));
}

/// A hydra: 30 accounts on 3 subnets, ~30 requests a day each, fired together by one
/// scheduler, half of it templated harvesting, half cover traffic.
fn hydra(accounts: usize, days: i64) -> Vec<Req> {
    let mut reqs = Vec::new();
    for day in 0..days {
        for slot in 0..30 {
            let minute = T0 + day * 86_400_000 + slot * 47 * 60_000;
            for a in 0..accounts {
                let i = (day * 30 + slot) as usize * accounts + a;
                let content = if slot % 2 == 0 {
                    format!("{} Think step by step and show all intermediate reasoning.", question(i))
                } else {
                    format!("what's a good name for a {} shop", ["coffee", "bike", "book", "flower"][i % 4])
                };
                reqs.push(Req {
                    ts_ms: minute + a as i64 * 900,
                    account: format!("hydra-{a:02}"),
                    ip: ["203.0.113.5", "198.51.100.20", "192.0.2.33"][a % 3],
                    body: chat(json!([{"role": "user", "content": content}]), json!({"max_tokens": 2048})),
                    prompt_tokens: 50,
                    completion_tokens: 500,
                });
            }
        }
    }
    reqs
}

#[test]
fn hydra_cluster_is_one_alert_listing_its_members() {
    let mut e = engine();
    let changes = feed(&mut e, &hydra(30, 3));
    let clusters: Vec<&AlertChange> =
        changes.iter().filter(|c| c.alert.kind == AlertKind::CoordinatedCluster).collect();
    // Groups found before their links were complete are merged: one open alert remains,
    // listing every member.
    let mut open: std::collections::HashMap<&str, &Alert> = std::collections::HashMap::new();
    for c in &clusters {
        open.insert(&c.alert.id, &c.alert);
    }
    open.retain(|_, a| a.status == AlertStatus::Open);
    assert_eq!(open.len(), 1, "one open cluster alert");
    let last = open.values().next().unwrap();
    assert_eq!(last.account_ids.len(), 30, "{:?}", last.account_ids);
    // Each member was flagged within its first 50 requests.
    let first = clusters[0];
    let created = crate::clock::parse_time(&first.alert.created_at).unwrap();
    let per_account_before = (created - T0) / (47 * 60_000) + 1;
    assert!(per_account_before <= 50, "{per_account_before}");
}

#[test]
fn false_positive_suppresses_and_allow_list_exempts() {
    let mut e = engine();
    let reqs = reasoning_harvester("h", 300);
    let changes = feed(&mut e, &reqs[..150]);
    let alert = changes.iter().find(|c| c.created).expect("alert").alert.clone();
    assert!(e.resolve(&alert.id, true, reqs[149].ts_ms));
    assert!(feed(&mut e, &reqs[150..]).is_empty(), "suppressed after false positive");

    let raw = RawDetection { allow_accounts: Some(vec!["h".into()]), ..Default::default() };
    let mut problems = Vec::new();
    let mut allowed = Engine::new(Arc::new(config::validate(raw, &mut problems)));
    assert!(problems.is_empty());
    assert!(feed(&mut allowed, &reqs).is_empty());
    assert_eq!(allowed.tracked(), 0);
}

#[test]
fn shadow_mode_marks_alerts_not_enforced() {
    let raw = RawDetection { mode: Some(Mode::Shadow), ..Default::default() };
    let mut e = Engine::new(Arc::new(config::validate(raw, &mut Vec::new())));
    let changes = feed(&mut e, &reasoning_harvester("h", 300));
    assert!(!changes.is_empty());
    assert!(changes.iter().all(|c| !c.alert.enforced));
}

#[test]
fn per_account_state_stays_under_4_kib() {
    let mut e = engine();
    let mut reqs = reasoning_harvester("big", 3000);
    for (i, r) in reqs.iter_mut().enumerate() {
        // Long prompts and many client addresses must not grow the state.
        let long = "word ".repeat(2000) + &i.to_string();
        r.body = chat(json!([{"role": "user", "content": long}]), json!({}));
        r.ip = ["203.0.113.1", "203.0.114.1", "203.0.115.1", "203.0.116.1", "203.0.117.1"][i % 5];
    }
    feed(&mut e, &reqs);
    let bytes = e.account("big").unwrap().memory_bytes();
    assert!(bytes <= 4096, "{bytes} bytes");
}

#[test]
fn idle_accounts_are_evicted() {
    let raw = RawDetection { idle_evict_hours: Some(1), ..Default::default() };
    let mut e = Engine::new(Arc::new(config::validate(raw, &mut Vec::new())));
    let mut reqs = reasoning_harvester("old", 5);
    let mut later = reasoning_harvester("new", 50);
    for r in later.iter_mut() {
        r.ts_ms += 3 * 3_600_000;
    }
    reqs.extend(later);
    feed(&mut e, &reqs);
    assert!(e.account("old").is_none());
    assert!(e.account("new").is_some());
}

#[test]
fn same_events_same_alerts() {
    let reqs = hydra(10, 2).into_iter().chain(reasoning_harvester("solo", 300)).collect::<Vec<_>>();
    let mut sorted = reqs;
    sorted.sort_by_key(|r| r.ts_ms);
    let a: Vec<Alert> = feed(&mut engine(), &sorted).into_iter().map(|c| c.alert).collect();
    let b: Vec<Alert> = feed(&mut engine(), &sorted).into_iter().map(|c| c.alert).collect();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// Detector memory with 100k active accounts (the figure is printed; the bound asserted is
/// the 4 KiB-per-account budget, heap included).
#[test]
fn memory_with_100k_active_accounts() {
    let mut e = engine();
    let accounts = 100_000;
    let bodies: Vec<Map<String, Value>> = (0..8)
        .map(|i| {
            chat(
                json!([{"role": "user", "content": format!("{} Please show your reasoning.", question(i))}]),
                json!({}),
            )
        })
        .collect();
    let bodies: Vec<crate::llm::LlmRequest> = bodies.iter().map(request_of).collect();
    for round in 0..3 {
        for a in 0..accounts {
            let account = format!("acct-{a:06}");
            let ip = format!("10.{}.{}.{}", a >> 16 & 255, a >> 8 & 255, a & 255);
            let obs = Observation {
                ts_ms: T0 + round * 600_000 + a as i64,
                request_id: "r",
                account_id: &account,
                client_ip: ip.parse().ok(),
                user_agent: Some("OpenAI/Python 1.54.0"),
                path: "/v1/chat/completions",
                status: 200,
                prompt_tokens: 40,
                completion_tokens: 200,
                features: features::extract("/v1/chat/completions", Some(&bodies[(a + round as usize) % 8])),
            };
            e.observe(&obs);
        }
    }
    assert_eq!(e.tracked(), accounts);
    let total = e.memory_bytes();
    let per = total / accounts;
    println!("detector state: {accounts} accounts, {:.1} MiB, {per} bytes/account", total as f64 / 1048576.0);
    assert!(per <= 4096, "{per} bytes per account");
}

/// `config/warden.toml` documents the defaults; keep it true to the code.
#[test]
fn example_config_states_the_real_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/warden.toml");
    let documented = config::load_section(&path).expect("example [detection] is valid");
    let defaults = DetectConfig::default();
    assert_eq!(documented.signals, defaults.signals);
    let bands = |c: &DetectConfig| c.actions.iter().map(|b| (b.min_score, b.action)).collect::<Vec<_>>();
    assert_eq!(bands(&documented), bands(&defaults));
    assert_eq!(documented.min_requests, defaults.min_requests);
    assert_eq!(documented.cluster_min_accounts, defaults.cluster_min_accounts);
    assert_eq!(documented.idle_evict, defaults.idle_evict);
    let eval = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/detector.toml");
    assert_eq!(bands(&config::load_section(&eval).unwrap()), bands(&defaults));
}

#[test]
fn alert_states_are_written_as_ever() {
    // Alerts go to the admin API, `warden backtest` and the store (body and text columns)
    // by these names; `as_str` and serde must agree on them.
    fn check<T: Copy + PartialEq + std::fmt::Debug + Serialize + serde::de::DeserializeOwned>(
        cases: &[(T, &str)],
        as_str: fn(T) -> &'static str,
    ) {
        for &(v, text) in cases {
            assert_eq!(as_str(v), text);
            assert_eq!(serde_json::to_value(v).unwrap(), text);
            assert_eq!(serde_json::from_value::<T>(text.into()).unwrap(), v);
        }
    }
    // Exhaustive matches: a new variant fails to compile here until it is listed.
    let _ = |k: AlertKind| match k {
        AlertKind::Extraction | AlertKind::CoordinatedCluster => (),
    };
    let _ = |s: Severity| match s {
        Severity::Low | Severity::Medium | Severity::High => (),
    };
    let _ = |s: AlertStatus| match s {
        AlertStatus::Open | AlertStatus::Resolved | AlertStatus::Merged => (),
    };
    let _ = |v: Verdict| match v {
        Verdict::Confirmed | Verdict::FalsePositive => (),
    };
    let _ = |a: Action| match a {
        Action::Observe | Action::Alert | Action::Strip | Action::Throttle | Action::Block => (),
    };
    check(
        &[(AlertKind::Extraction, "extraction"), (AlertKind::CoordinatedCluster, "coordinated_cluster")],
        AlertKind::as_str,
    );
    check(&[(Severity::Low, "low"), (Severity::Medium, "medium"), (Severity::High, "high")], Severity::as_str);
    check(
        &[(AlertStatus::Open, "open"), (AlertStatus::Resolved, "resolved"), (AlertStatus::Merged, "merged")],
        AlertStatus::as_str,
    );
    check(&[(Verdict::Confirmed, "confirmed"), (Verdict::FalsePositive, "false_positive")], Verdict::as_str);
    check(
        &[
            (Action::Observe, "observe"),
            (Action::Alert, "alert"),
            (Action::Strip, "strip"),
            (Action::Throttle, "throttle"),
            (Action::Block, "block"),
        ],
        Action::as_str,
    );
    // The admin API's reading of a verdict.
    assert_eq!(Verdict::parse("confirmed"), Some(Verdict::Confirmed));
    assert_eq!(Verdict::parse("false_positive"), Some(Verdict::FalsePositive));
    assert_eq!(Verdict::parse("False_Positive"), None);
    assert_eq!(Verdict::parse("falsepositive"), None);
}

/// A stream of free-form prompts with no fixed prefix or suffix (a dataset, not a template).
fn free_prompt(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut words = Vec::new();
    for _ in 0..(8 + seed % 7) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        words.push(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    words.join(" ")
}

fn observe_one(
    e: &mut Engine,
    ts_ms: i64,
    account: &str,
    ip: &str,
    ua: &str,
    body: &Map<String, Value>,
    out_tokens: u64,
) -> Vec<AlertChange> {
    let obs = Observation {
        ts_ms,
        request_id: "r",
        account_id: account,
        client_ip: ip.parse().ok(),
        user_agent: Some(ua),
        path: "/v1/chat/completions",
        status: 200,
        prompt_tokens: 30,
        completion_tokens: out_tokens,
        features: features::extract("/v1/chat/completions", Some(&request_of(body))),
    };
    e.observe(&obs)
}

/// 30 accounts, one request at a time from the next account, a fresh /24 each time.
fn round_robin(e: &mut Engine) -> Vec<AlertChange> {
    let mut changes = Vec::new();
    for i in 0..(30 * 16) {
        let account = format!("rr-{:02}", i % 30);
        let ip = format!("{}.{}.{}.9", 60 + (i * 7) % 150, (i * 13) % 250, (i * 29) % 250);
        let body = chat(json!([{"role": "user", "content": free_prompt(i as u64)}]), json!({"max_tokens": 2048}));
        changes.extend(observe_one(e, T0 + i as i64 * 90_000, &account, &ip, "aiohttp/3.9.5", &body, 700));
    }
    changes
}

#[test]
fn a_round_robin_over_a_proxy_pool_is_one_cluster() {
    let mut e = engine();
    let changes = round_robin(&mut e);
    let cluster = changes
        .iter()
        .filter(|c| c.alert.kind == AlertKind::CoordinatedCluster)
        .max_by_key(|c| c.alert.account_ids.len())
        .expect("a cluster alert");
    assert!(cluster.alert.account_ids.len() >= 25, "{:?}", cluster.alert.account_ids);
    let pool =
        cluster.alert.evidence["features"].as_array().unwrap().iter().find(|f| f["name"] == "proxy_pool").unwrap();
    assert!(pool["value"].as_f64().unwrap() >= 0.5, "{pool}");
    // Every member churns networks: that is what a link kind records.
    assert!(e.links().iter().any(|l| l.kinds.contains(&"proxy_pool")));
    // The same campaign with the infrastructure links switched off is not linked at all.
    let raw = RawDetection { disable_families: Some(vec!["infrastructure_links".into()]), ..Default::default() };
    let mut problems = Vec::new();
    let mut off = Engine::new(Arc::new(config::validate(raw, &mut problems)));
    assert!(problems.is_empty(), "{problems:?}");
    assert!(round_robin(&mut off).iter().all(|c| c.alert.kind != AlertKind::CoordinatedCluster));
}

/// An account asking hundreds of fresh, broad questions a day, answered at length, at
/// Poisson times around the clock, a third of them follow-ups of what it just asked:
/// no single intent signal fires (breadth is diluted by the follow-ups).
fn wide_coverage(account: &str, days: i64) -> Vec<Req> {
    let mut reqs = Vec::new();
    let (mut t, mut x) = (T0, 0x2545_f491_4f6c_dd1du64);
    let mut last = String::new();
    for i in 0..(days * 450) as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Exponential gaps with a mean of 192 s (450 a day).
        t += (-((x % 10_000) as f64 / 10_000.0 + 1e-4).ln() * 192_000.0) as i64;
        let messages = if i % 3 == 2 {
            json!([{"role": "user", "content": last}, {"role": "assistant", "content": "Here is an overview ..."},
                   {"role": "user", "content": format!("go deeper on point {}", i % 5 + 1)}])
        } else {
            last = format!("{} ({i})", free_prompt(i as u64 * 31 + 7));
            json!([{"role": "user", "content": last}])
        };
        reqs.push(Req {
            ts_ms: t,
            account: account.into(),
            ip: "203.0.113.44",
            body: chat(messages, json!({})),
            prompt_tokens: 30,
            completion_tokens: 700,
        });
    }
    reqs
}

#[test]
fn coverage_at_scale_opens_a_review_alert_and_no_action() {
    let mut e = engine();
    let changes = feed(&mut e, &wide_coverage("wide", 2));
    let first = changes.iter().find(|c| c.created).expect("an alert");
    assert_eq!(first.alert.kind, AlertKind::Extraction);
    // The evidence lists the signals that count.
    let fired = |name: &str| {
        first.alert.evidence["signals"].as_array().unwrap().iter().any(|s| s["name"] == name && s["fired"] == true)
    };
    assert!(fired("daily_breadth") && fired("long_outputs"), "{}", first.alert.evidence);
    assert!(
        !fired("breadth") && !fired("reasoning_elicitation"),
        "no intent signal carries it: {}",
        first.alert.evidence
    );
    assert!(
        changes.iter().all(|c| c.action == Action::Alert || c.action == Action::Observe),
        "coverage alone never acts: {:?}",
        changes.iter().map(|c| c.action).collect::<Vec<_>>()
    );
}

/// A campaign whose members each word the reasoning request their own way, from their own
/// addresses, at a person's pace (25 requests in a working day each: no member is caught
/// alone), all through one script's client; with `people` more accounts on that same
/// client asking for nothing in particular.
fn paraphrased_campaign(e: &mut Engine, people: usize) -> Vec<AlertChange> {
    const NAMES: [&str; 12] =
        ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"];
    // (time, account, client address, body, completion tokens)
    type Event = (i64, String, String, Map<String, Value>, u64);
    let mut events: Vec<Event> = Vec::new();
    let client = json!({"max_tokens": 3072, "temperature": 0.55});
    for (m, name) in NAMES.iter().enumerate() {
        let mut t = T0 + 9 * 3_600_000 + m as i64 * 41_000;
        for i in 0..25u64 {
            t += 600_000 + ((i * 7919 + m as u64 * 104_729) % 900) as i64 * 1_000;
            let q = question(m * 100 + i as usize);
            let text = format!("{name} asks: reason step by step about this. {q} Show all working, {name} here.");
            let ip = format!("100.{}.{}.{}", 64 + m, i % 7, 10 + i);
            let body = chat(json!([{"role": "user", "content": text}]), client.clone());
            events.push((t, format!("para-{name}"), ip, body, 900));
        }
    }
    // People on the same client since the early morning: short conversations, short answers.
    for p in 0..people {
        let mut t = T0 + 7 * 3_600_000 + p as i64 * 13_000;
        let mut opener = String::new();
        for i in 0..30u64 {
            t += 600_000 + ((i * 6007 + p as u64 * 7_151) % 900) as i64 * 1_000;
            let messages = if i % 3 == 0 {
                opener = free_prompt(p as u64 * 1000 + i);
                json!([{"role": "user", "content": opener}])
            } else {
                json!([{"role": "user", "content": opener}, {"role": "assistant", "content": "Done."},
                       {"role": "user", "content": format!("thanks, and item {i}?")}])
            };
            events.push((t, format!("person-{p:02}"), format!("198.18.{p}.1"), chat(messages, client.clone()), 25));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut changes = Vec::new();
    for (t, account, ip, body, out) in &events {
        changes.extend(observe_one(e, *t, account, ip, "campaign-runner/0.9", body, *out));
    }
    changes
}

#[test]
fn a_client_mostly_harvesters_hold_links_its_holders() {
    let mut e = engine();
    let changes = paraphrased_campaign(&mut e, 0);
    assert!(
        !changes.iter().any(|c| c.alert.kind == AlertKind::Extraction),
        "no member is caught alone: {:?}",
        changes.iter().map(|c| &c.alert.account_ids).collect::<Vec<_>>()
    );
    let cluster = changes.iter().rev().find(|c| c.alert.kind == AlertKind::CoordinatedCluster).expect("a cluster");
    assert_eq!(cluster.alert.account_ids.len(), 12, "{:?}", cluster.alert.account_ids);
    assert!(cluster.alert.account_ids.iter().all(|a| a.starts_with("para-")));
    let feature = |name: &str| {
        cluster.alert.evidence["features"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(feature("harvesting_fingerprint"), 1.0, "{}", cluster.alert.evidence);
    assert_eq!(feature("shared_template"), 0.0, "no wording is shared: {}", cluster.alert.evidence);
    assert!(e.links().iter().all(|l| l.kinds.contains(&"harvesting_fingerprint")), "{:?}", e.links());

    // The same client in many people's hands links nobody through it (beside a crowd the
    // campaign's content stands out, and the content-direction link finds it instead),
    // and none of the people is reported.
    let mut crowd = engine();
    let changes = paraphrased_campaign(&mut crowd, 30);
    assert!(crowd.links().iter().all(|l| !l.kinds.contains(&"harvesting_fingerprint")), "{:?}", crowd.links());
    assert!(
        changes.iter().all(|c| c.alert.account_ids.iter().all(|a| a.starts_with("para-"))),
        "{:?}",
        changes.iter().map(|c| (&c.alert.kind, &c.alert.account_ids)).collect::<Vec<_>>()
    );
}

#[test]
fn a_company_behind_one_nat_is_linked_but_not_reported() {
    let mut e = engine();
    let mut changes = Vec::new();
    // 20 employees, one NAT address, one internal tool, the same office hours: they share
    // a subnet, a fingerprint and busy minutes, and hold ordinary conversations.
    for day in 0..3i64 {
        for step in 0..(8 * 30) {
            let ts = T0 + day * 86_400_000 + 9 * 3_600_000 + step * 120_000;
            let who = (step * 7 + day) % 20;
            let first = free_prompt((day * 1000 + step) as u64);
            let body = chat(
                json!([
                    {"role": "user", "content": first},
                    {"role": "assistant", "content": "Here is a draft."},
                    {"role": "user", "content": "thanks, can you make it shorter?"}
                ]),
                json!({}),
            );
            changes.extend(observe_one(
                &mut e,
                ts,
                &format!("emp-{who:02}"),
                "198.51.100.7",
                "acme-internal/2.1",
                &body,
                40,
            ));
        }
    }
    assert!(!e.links().is_empty(), "the link kinds see the shared NAT");
    assert!(changes.is_empty(), "{:?}", changes.iter().map(|c| (&c.alert.kind, c.alert.score)).collect::<Vec<_>>());
}

#[test]
fn reasoning_asked_for_in_a_long_system_prompt_earns_no_product_discount() {
    let system = "You are a meticulous tutor. Always provide complete and transparent reasoning: every \
                  intermediate step, every assumption and every calculation must be written out before the answer.";
    let body = chat(
        json!([{"role": "system", "content": system}, {"role": "user", "content": "What is 17 times 23?"}]),
        json!({}),
    );
    let f = features::extract("/v1/chat/completions", Some(&request_of(&body)));
    assert!(f.system_elicits);
    assert!(f.reasoning.is_some());
    let persona = chat(
        json!([{"role": "system", "content": "You are the help-desk assistant of Northwind Traders. Answer questions about orders, shipping and returns politely."},
               {"role": "user", "content": "Where is my parcel?"}]),
        json!({}),
    );
    let p = features::extract("/v1/chat/completions", Some(&request_of(&persona)));
    assert!(!p.system_elicits && p.reasoning.is_none());
}

/// The same harvester through either API, as audit records (design 3.5), read back by
/// `warden backtest`: Messages records are read like chat records, and the harvester is
/// caught at the same request in both; its `count_tokens` calls are no requests for text.
#[test]
fn backtest_reads_messages_records_as_it_reads_chat_records() {
    let dir = tempfile::tempdir().unwrap();
    let record = |account: &str, i: usize, r: &Req, path: &str, body: Value| {
        let ts = crate::clock::rfc3339_millis(r.ts_ms);
        json!({"ts": ts, "request_id": format!("{account}-{i}"), "account_id": account, "client_ip": r.ip,
            "user_agent": "Anthropic/Python 0.49.0", "path": path, "dialect": crate::error::Dialect::of_path(path).as_str(),
            "status": 200, "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens},
            "request_body": body})
        .to_string()
    };
    let mut lines = Vec::new();
    for (i, r) in reasoning_harvester("via-chat", 300).iter().enumerate() {
        lines.push(record("via-chat", i, r, "/v1/chat/completions", Value::Object(r.body.clone())));
        // The same prompt in Anthropic's shape: content blocks, a required max_tokens.
        let text = r.body["messages"][0]["content"].as_str().unwrap();
        let messages = json!({"model": "claude-sonnet-4", "max_tokens": 4096, "temperature": 0.6,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]});
        // Another address, three days later: two accounts, not one clock.
        let later = 3 * 86_400_000;
        let mut shifted = Req { account: "via-messages".into(), body: Map::new(), ip: "203.0.113.9", ..*r };
        shifted.ts_ms += later;
        lines.push(record("via-messages", i, &shifted, "/v1/messages", messages.clone()));
        // Before each message, a token count (the SDK's `count_tokens`), as many clients do.
        let mut counted = Req { account: "via-messages".into(), body: Map::new(), ip: "203.0.113.9", ..*r };
        counted.ts_ms += later - 300;
        counted.completion_tokens = 0;
        lines.push(record("via-messages", i, &counted, "/v1/messages/count_tokens", messages));
    }
    lines.sort_by_key(|l| serde_json::from_str::<Value>(l).unwrap()["ts"].as_str().unwrap().to_string());
    let file = dir.path().join("audit-both.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut out = Vec::new();
    let summary = backtest::run(DetectConfig::default(), &[file], &mut out).unwrap();
    assert_eq!(summary.skipped, 0);
    assert_eq!(summary.records, 900);
    let alerts: Vec<Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first = |account: &str| {
        alerts
            .iter()
            .find(|a| a["account_ids"] == json!([account]))
            .unwrap_or_else(|| panic!("{account} not alerted: {alerts:#?}"))
            .clone()
    };
    let (chat, messages) = (first("via-chat"), first("via-messages"));
    let signals = |a: &Value| {
        let mut s: Vec<String> = a["evidence"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    assert_eq!(signals(&chat), signals(&messages));
    assert!(signals(&messages).contains(&"reasoning_elicitation".to_string()));
    assert_eq!(chat["evidence"]["requests"], messages["evidence"]["requests"], "caught at the same request");
}
