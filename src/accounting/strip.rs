//! Reasoning taken out of responses (`reasoning = "strip"`, the detector's `strip`
//! action), streamed or not, so that what reaches the client is still a response its SDK
//! parses:
//!
//! - Anthropic Messages: `thinking` and `redacted_thinking` content blocks, and in a
//!   stream their `content_block_start`, `content_block_delta` (`thinking_delta`,
//!   `signature_delta`) and `content_block_stop` events. The blocks after a removed one
//!   are renumbered (`index`): the SDKs index their message snapshot by it.
//! - OpenAI-compatible chat and completions: the `reasoning_content`, `reasoning` and
//!   `reasoning_details` fields of each choice's `message` or stream `delta` (what
//!   DeepSeek, vLLM, SGLang and OpenRouter send).
//! - `/v1/responses`: `reasoning` output items (summaries and encrypted content), the
//!   `response.reasoning_*` stream events, and `response.output_item.*` events of a
//!   reasoning item; `output_index` of the items after one is renumbered, and the response
//!   objects of `response.created` / `.completed` lose their reasoning items too.
//!
//! Usage is not touched: the reasoning tokens were generated and are counted in full.
//! A JSON response is held until it is whole (at most 8 MiB: a larger one is cut with an
//! error rather than passed on with its reasoning).
//! Events are looked at only when they could concern reasoning (a byte search); the rest
//! pass as they came.

use bytes::BytesMut;
use serde_json::Value;

use crate::llm::LlmRoute;

/// The reasoning fields of a chat choice's `message` / `delta`.
const CHAT_REASONING_KEYS: [&str; 3] = ["reasoning_content", "reasoning", "reasoning_details"];

/// What to do with one event.
enum Verdict {
    Keep,
    Drop,
    Rewrite,
}

/// The state of one stream's stripping.
#[derive(Debug)]
pub(super) struct Stripper {
    route: LlmRoute,
    /// Upstream indices of the blocks (Messages) or output items (Responses) removed.
    removed: Vec<u64>,
    /// Events removed or rewritten.
    pub(super) changed: u64,
}

fn finder(needle: &'static [u8]) -> memchr::memmem::Finder<'static> {
    memchr::memmem::Finder::new(needle)
}

impl Stripper {
    pub(super) fn new(route: LlmRoute) -> Stripper {
        Stripper { route, removed: Vec::new(), changed: 0 }
    }

    /// Whether an event may concern reasoning, or carries an index that may need
    /// renumbering.
    fn concerns(&self, data: &[u8]) -> bool {
        static THINKING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| finder(b"thinking"));
        static SIGNATURE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| finder(b"signature"));
        static REASONING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| finder(b"reasoning"));
        static INDEX: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| finder(b"index\""));
        let renumbers = !self.removed.is_empty() && INDEX.find(data).is_some();
        match self.route {
            LlmRoute::Messages => renumbers || THINKING.find(data).is_some() || SIGNATURE.find(data).is_some(),
            LlmRoute::Responses => renumbers || REASONING.find(data).is_some(),
            _ => REASONING.find(data).is_some(),
        }
    }

    /// One complete SSE event: appended to `out` as it came, rewritten, or not at all.
    pub(super) fn event(&mut self, event: &[u8], out: &mut BytesMut) {
        let data = super::event_data(event);
        if data.is_empty() || !self.concerns(&data) {
            out.extend_from_slice(event);
            return;
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(&data) else {
            out.extend_from_slice(event);
            return;
        };
        let verdict = match self.route {
            LlmRoute::Messages => self.messages_event(&mut v),
            LlmRoute::Responses => self.responses_event(&mut v),
            _ => {
                if strip_choices(&mut v, "delta") {
                    Verdict::Rewrite
                } else {
                    Verdict::Keep
                }
            }
        };
        match verdict {
            Verdict::Keep => out.extend_from_slice(event),
            Verdict::Drop => self.changed += 1,
            Verdict::Rewrite => {
                self.changed += 1;
                rewrite(event, &v, out);
            }
        }
    }

    /// Marks an upstream index removed, once however often a hostile upstream repeats it.
    fn remove(&mut self, index: u64) {
        if !self.removed.contains(&index) {
            self.removed.push(index);
        }
    }

    /// `index` less the removed blocks before it (each index counted once, so never
    /// below zero).
    fn renumbered(&self, index: u64) -> u64 {
        index.saturating_sub(self.removed.iter().filter(|r| **r < index).count() as u64)
    }

    /// Renumbers `v[key]`; whether it changed.
    fn renumber(&self, v: &mut Value, key: &str) -> Verdict {
        match v.get(key).and_then(Value::as_u64) {
            Some(i) if self.renumbered(i) != i => {
                v[key] = Value::from(self.renumbered(i));
                Verdict::Rewrite
            }
            _ => Verdict::Keep,
        }
    }

    fn messages_event(&mut self, v: &mut Value) -> Verdict {
        let index = v.get("index").and_then(Value::as_u64);
        match (v.get("type").and_then(Value::as_str), index) {
            (Some("content_block_start"), Some(i)) => {
                let kind = v.pointer("/content_block/type").and_then(Value::as_str);
                if kind.is_some_and(is_thinking_block) {
                    self.remove(i);
                    Verdict::Drop
                } else {
                    self.renumber(v, "index")
                }
            }
            (Some("content_block_delta" | "content_block_stop"), Some(i)) => {
                let kind = v.pointer("/delta/type").and_then(Value::as_str);
                if self.removed.contains(&i) || matches!(kind, Some("thinking_delta" | "signature_delta")) {
                    Verdict::Drop
                } else {
                    self.renumber(v, "index")
                }
            }
            (Some("message_start"), _) => {
                // The message's content so far (empty in practice).
                if v.pointer_mut("/message/content").is_some_and(strip_blocks) {
                    Verdict::Rewrite
                } else {
                    Verdict::Keep
                }
            }
            _ => Verdict::Keep,
        }
    }

    fn responses_event(&mut self, v: &mut Value) -> Verdict {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if kind.starts_with("response.reasoning") {
            return Verdict::Drop;
        }
        if matches!(kind, "response.output_item.added" | "response.output_item.done") {
            let reasoning = v.pointer("/item/type").and_then(Value::as_str) == Some("reasoning");
            if reasoning {
                if let Some(i) = v.get("output_index").and_then(Value::as_u64) {
                    self.remove(i);
                }
                return Verdict::Drop;
            }
        }
        let mut changed = matches!(self.renumber(v, "output_index"), Verdict::Rewrite);
        if let Some(response) = v.get_mut("response") {
            changed |= strip_response_output(response);
        }
        if changed {
            Verdict::Rewrite
        } else {
            Verdict::Keep
        }
    }
}

fn is_thinking_block(kind: &str) -> bool {
    matches!(kind, "thinking" | "redacted_thinking")
}

/// Removes thinking blocks from a Messages `content` array; whether any was.
fn strip_blocks(content: &mut Value) -> bool {
    let Some(blocks) = content.as_array_mut() else { return false };
    let before = blocks.len();
    blocks.retain(|b| !b.get("type").and_then(Value::as_str).is_some_and(is_thinking_block));
    blocks.len() != before
}

/// Removes reasoning items from a Responses object's `output`; whether any was.
fn strip_response_output(response: &mut Value) -> bool {
    let Some(items) = response.get_mut("output").and_then(Value::as_array_mut) else { return false };
    let before = items.len();
    items.retain(|i| i.get("type").and_then(Value::as_str) != Some("reasoning"));
    items.len() != before
}

/// Removes the reasoning fields of each choice's `message` (`delta` in a stream).
fn strip_choices(v: &mut Value, message: &str) -> bool {
    let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else { return false };
    let mut changed = false;
    for c in choices {
        if let Some(m) = c.get_mut(message).and_then(Value::as_object_mut) {
            for key in CHAT_REASONING_KEYS {
                changed |= m.remove(key).is_some();
            }
        }
    }
    changed
}

/// The event with its data replaced by `v`: its other lines (`event:`, `id:`) kept.
fn rewrite(event: &[u8], v: &Value, out: &mut BytesMut) {
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b"data:") {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(v).expect("serializing parsed JSON cannot fail"));
    out.extend_from_slice(b"\n\n");
}

/// A whole JSON response without its reasoning; `None` when there is none to remove (or
/// the body is not JSON: it goes as it came).
pub(super) fn strip_json(route: LlmRoute, body: &[u8]) -> Option<Vec<u8>> {
    static REASONING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| finder(b"reasoning"));
    static THINKING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| finder(b"thinking"));
    let mentions = match route {
        LlmRoute::Messages => THINKING.find(body).is_some(),
        _ => REASONING.find(body).is_some(),
    };
    if !mentions {
        return None;
    }
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let changed = match route {
        LlmRoute::Messages => v.get_mut("content").is_some_and(strip_blocks),
        LlmRoute::Responses => strip_response_output(&mut v),
        _ => strip_choices(&mut v, "message"),
    };
    changed.then(|| serde_json::to_vec(&v).expect("serializing parsed JSON cannot fail"))
}
