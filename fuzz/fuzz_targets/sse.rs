//! The response tap's readers (`warden::accounting::scan_sse` / `scan_json_response`, the
//! code `TapBody` runs), on a body cut into chunks where the input says.
//!
//! Input: a flags byte (route, strip_usage, JSON instead of SSE, capture limit, reasoning
//! stripped), a count byte, that many chunk lengths, then the body.
//!
//! - Pass-through (SSE without strip_usage, and JSON): the bytes forwarded are the body,
//!   exactly.
//! - strip_usage: what is forwarded is the body's complete events in order, each either
//!   left out (only a usage chunk may be, and never on the Responses route) or kept with
//!   only its `"usage":null` members removed, then the unfinished tail as it came (or,
//!   once its bytes passed on mid-event, less its `"usage":null` members).
//! - Whatever the cuts, the same bytes, usage and completion text as in one chunk.
//! - A JSON response that serde_json reads as an object gives the usage it holds.
//! - Reasoning stripped (any of the six LLM routes, Messages included): whatever the
//!   cuts, the same bytes, usage and text as in one chunk, and the same usage and text as
//!   without stripping (they are read from the events as the upstream sent them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden::accounting::{scan_json_response, scan_sse, scan_sse_stripping, without_usage_null, Usage};
use warden::llm::LlmRoute;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let [flags, count, rest @ ..] = data else { return };
    let n = usize::from(count % 8).min(rest.len());
    let (lengths, body) = rest.split_at(n);
    let route = LlmRoute::ALL[usize::from(flags & 3)];
    let strip_usage = flags & 4 != 0;
    let as_json = flags & 8 != 0;
    let capture_limit = [0, 7, 64, 1 << 20][usize::from(flags >> 4 & 3)];
    let chunks = cut(body, lengths);
    if flags & 64 != 0 {
        check_stripping(*flags, strip_usage, capture_limit, body, &chunks);
        return;
    }
    let run = |chunks: &[&[u8]]| {
        if as_json {
            scan_json_response(route, chunks, capture_limit)
        } else {
            scan_sse(route, strip_usage, chunks, capture_limit)
        }
    };
    let whole = run(&[body]);
    assert_eq!(run(&chunks), whole, "the cuts changed the result: {chunks:?}");
    if body.len() <= 256 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte changed the result");
    }
    let (forwarded, usage, text) = whole;
    assert!(text.len() <= capture_limit, "captured past the limit");
    if as_json {
        assert_eq!(forwarded, body, "a JSON response is forwarded as it is");
        check_json_usage(body, usage);
    } else if !strip_usage {
        assert_eq!(forwarded, body, "a stream is forwarded as it is");
    } else {
        check_rewrite(route, body, &forwarded);
    }
}

fn check_stripping(flags: u8, strip_usage: bool, capture_limit: usize, body: &[u8], chunks: &[&[u8]]) {
    let route = LlmRoute::ALL[usize::from((flags & 3) | (flags >> 7) << 2) % LlmRoute::ALL.len()];
    let run = |chunks: &[&[u8]]| scan_sse_stripping(route, strip_usage, chunks, capture_limit);
    let whole = run(&[body]);
    assert_eq!(run(chunks), whole, "the cuts changed the stripped result: {chunks:?}");
    if body.len() <= 256 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte changed the stripped result");
    }
    let (_, usage, text) = scan_sse(route, strip_usage, &[body], capture_limit);
    assert_eq!((whole.1, &whole.2), (usage, &text), "stripping changed what was counted");
}

/// `body` in pieces of the given lengths, in turn (0 makes an empty chunk), the rest in
/// the last piece.
fn cut<'a>(mut body: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    if lengths.iter().all(|l| *l == 0) {
        return vec![body];
    }
    for l in lengths.iter().cycle() {
        let l = usize::from(*l).min(body.len());
        let (a, b) = body.split_at(l);
        out.push(a);
        body = b;
        if body.is_empty() {
            break;
        }
    }
    out
}

/// The complete events of `body` (each up to and with its blank line: `\n\n` or
/// `\n\r\n`) and the unfinished tail.
fn events(body: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\n' {
            let end = if body.get(i + 1) == Some(&b'\n') {
                Some(i + 2)
            } else if body.get(i + 1..i + 3) == Some(b"\r\n") {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = end {
                out.push(&body[start..end]);
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    (out, &body[start..])
}

fn check_rewrite(route: LlmRoute, body: &[u8], forwarded: &[u8]) {
    let (events, tail) = events(body);
    // The unfinished tail goes as it came or, once it showed it is no usage chunk (its
    // bytes pass on as they arrive), without its `"usage":null` members but for the last
    // few bytes, which were held back in case they begin one.
    let mut tails = vec![tail.to_vec()];
    for k in tail.len().saturating_sub(13)..=tail.len() {
        let mut t = without_usage_null(&tail[..k]);
        t.extend_from_slice(&tail[k..]);
        tails.push(t);
    }
    let Some(sent) = tails.iter().find(|t| forwarded.ends_with(t)) else {
        panic!("the unfinished tail is flushed as it came, or less its \"usage\":null members");
    };
    let head = &forwarded[..forwarded.len() - sent.len()];
    // Every way of keeping or leaving out each event: the positions in `head` reachable.
    let mut reach = std::collections::BTreeSet::from([0usize]);
    for e in &events {
        let kept = without_usage_null(e);
        let may_drop = route != LlmRoute::Responses && has_usage_key(e);
        let mut next = std::collections::BTreeSet::new();
        for &p in &reach {
            if head[p..].starts_with(&kept) {
                next.insert(p + kept.len());
            }
            if may_drop {
                next.insert(p);
            }
        }
        assert!(!next.is_empty(), "forwarded is not the body's events in order: {:?}", String::from_utf8_lossy(e));
        reach = next;
    }
    assert!(reach.contains(&head.len()), "forwarded has bytes that are no event of the body");
}

fn has_usage_key(e: &[u8]) -> bool {
    e.windows(7).any(|w| w == b"\"usage\"")
}

/// The usage of a JSON response as serde_json reads it: the last `usage` object's counts
/// (non-negative integers; `input_tokens` / `output_tokens` when the others are not).
fn check_json_usage(body: &[u8], usage: Option<Usage>) {
    // The scanner compares keys as they are written: a key spelled with `\u` escapes is
    // another key to it.
    if body.windows(2).any(|w| w == b"\\u") {
        return;
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else { return };
    let want = obj.get("usage").and_then(Value::as_object).map(|u| {
        let count = |k: &str| u.get(k).and_then(Value::as_u64);
        Usage {
            prompt_tokens: count("prompt_tokens").or(count("input_tokens")).unwrap_or(0),
            completion_tokens: count("completion_tokens").or(count("output_tokens")).unwrap_or(0),
        }
    });
    assert_eq!(usage, want, "usage of a JSON response");
}
