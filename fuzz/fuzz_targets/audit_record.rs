//! `warden backtest`'s reading of audit lines (`warden::detect::backtest::read_line`, the
//! code `run` calls per line).
//!
//! Input: a mode byte, then either audit lines as they come (mode even) or, for a record
//! made here, a timestamp's bytes and the record's request body.
//!
//! - Lines as they come: no panic; a record that is read agrees with serde_json's tree of
//!   the line (timestamp, account, ids, status, usage), and its features are those of the
//!   request body re-serialized by serde_json (the reading depends on the JSON, not on
//!   its formatting).
//! - A record made here, with an RFC 3339 timestamp formatted from a known instant (any
//!   offset, 0 to 9 fractional digits): read, and at that instant to the millisecond.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use warden::clock::parse_time as parse_ts;
use warden::detect::backtest::{read_line, Line};
use warden::detect::{features, Observation};
use warden::llm::{LlmRequest, LlmRoute};

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    if mode % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        for line in text.split_inclusive('\n') {
            check_line(line);
        }
    } else {
        made_record(rest);
    }
});

/// What a test keeps of an observation (it borrows from the line).
#[derive(Debug, PartialEq)]
struct Seen {
    ts_ms: i64,
    request_id: String,
    account_id: String,
    client_ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    path: String,
    status: u16,
    prompt_tokens: u64,
    completion_tokens: u64,
    features: String,
}

fn seen(o: &Observation<'_>) -> Seen {
    Seen {
        ts_ms: o.ts_ms,
        request_id: o.request_id.into(),
        account_id: o.account_id.into(),
        client_ip: o.client_ip,
        user_agent: o.user_agent.map(Into::into),
        path: o.path.into(),
        status: o.status,
        prompt_tokens: o.prompt_tokens,
        completion_tokens: o.completion_tokens,
        features: format!("{:?}", o.features),
    }
}

fn check_line(line: &str) {
    let got = match read_line(line, seen) {
        Line::Observed(s) => s,
        Line::Blank => {
            assert!(line.trim().is_empty());
            return;
        }
        Line::Malformed(_) | Line::Unusable => return,
    };
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        // serde skips the fields a record does not have (and the request body is a raw
        // value) without checking them as serde_json checks a value it keeps: a lone
        // surrogate or a number out of range there does not make the line unreadable.
        Err(_) => {
            return;
        }
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    assert_eq!(Some(got.ts_ms), s("ts").and_then(parse_ts), "ts");
    assert_eq!(Some(got.account_id.as_str()), s("account_id"), "account_id");
    assert_eq!(got.request_id, s("request_id").unwrap_or(""), "request_id");
    assert_eq!(got.user_agent.as_deref(), s("user_agent"), "user_agent");
    assert_eq!(got.client_ip, s("client_ip").and_then(|ip| ip.parse().ok()), "client_ip");
    assert_eq!(got.path, s("path").unwrap_or("/v1/chat/completions"), "path");
    assert_eq!(Some(u64::from(got.status)), v.get("status").and_then(Value::as_u64).or(Some(200)), "status");
    let tokens = |k: &str| v.get("usage").and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    assert_eq!((got.prompt_tokens, got.completion_tokens), (tokens("prompt_tokens"), tokens("completion_tokens")));
    let route = LlmRoute::of(&http::Method::POST, &got.path).unwrap_or(LlmRoute::ChatCompletions);
    let request = v
        .get("request_body")
        .and_then(|b| LlmRequest::parse(route, &serde_json::to_vec(b).expect("a tree serializes")).ok());
    let want = format!("{:?}", features::extract(&got.path, request.as_ref()));
    assert_eq!(got.features, want, "features of the body re-serialized");
}

fn made_record(data: &[u8]) {
    let Some((head, body)) = data.split_first_chunk::<12>() else { return };
    // Years 0000 to 9999 (what RFC 3339 can write) in any offset.
    const MIN_MS: i64 = -62_167_219_200_000 + 86_400_000;
    const MAX_MS: i64 = 253_402_300_799_999 - 86_400_000;
    let ms = MIN_MS + i64::from_le_bytes(head[..8].try_into().unwrap()).rem_euclid(MAX_MS - MIN_MS);
    let offset_min = i32::from(i16::from_le_bytes([head[8], head[9]])) % (24 * 60);
    let digits = u32::from(head[10] % 10);
    // Fewer than three fractional digits write an earlier instant: the millisecond
    // rounded down to what they can say.
    let ms = ms - ms.rem_euclid(10i64.pow(3u32.saturating_sub(digits)));
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("in range")
        .to_offset(UtcOffset::from_whole_seconds(offset_min * 60).expect("within a day"));
    let nanos = format!("{:09}", t.nanosecond());
    let fraction = if digits == 0 { String::new() } else { format!(".{}", &nanos[..digits as usize]) };
    let zone = match t.offset().whole_minutes() {
        0 if head[9] & 0x80 == 0 => "Z".to_string(),
        m => format!("{}{:02}:{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60),
    };
    let ts = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{zone}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    // The time crate's own writing reads back the same.
    assert_eq!(parse_ts(&t.format(&Rfc3339).expect("years 0000-9999")), Some(ms));
    let body: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)));
    let path =
        ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"][usize::from(head[11] % 4)];
    let line = json!({
        "ts": ts, "request_id": "r-1", "account_id": "acct", "path": path, "status": 200,
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "request_body": body,
    })
    .to_string();
    match read_line(&line, seen) {
        Line::Observed(got) => {
            assert_eq!(got.ts_ms, ms, "{ts} read as {} ms, written from {ms} ms", got.ts_ms);
            assert_eq!(got.account_id, "acct");
            assert_eq!((got.prompt_tokens, got.completion_tokens), (3, 4));
        }
        other => panic!("a record made here was not read: {other:?}: {line}"),
    }
}
