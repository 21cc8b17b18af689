//! One pass over an LLM request body: the parameters policy, limits and the detector
//! read, and the prompt text, without building a JSON tree. Strings that need no
//! unescaping stay where they are in the body (a range); only escaped ones are decoded.
//!
//! What counts as prompt text, and in which order, is what warden has always counted:
//! the top-level keys `instructions`, `messages`, `prompt`, `input`, `system` in that
//! order; inside them every string, every item of an array, and of an object the values
//! of `content`, `text` and `input_text` (in that order, whatever the order in the
//! body). Duplicate keys: the last one counts, as with any JSON object.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// One piece of text: a range of the body (no escapes), or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Raw(u32, u32),
    Owned(Box<str>),
}

/// The shape of a parameter's value, as far as warden looks at it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Scalar {
    #[default]
    Absent,
    Null,
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// Any other number.
    Number(f64),
    Str,
    Array,
    Object {
        empty: bool,
    },
}

impl Scalar {
    pub fn is_present(self) -> bool {
        self != Scalar::Absent
    }
    /// Present with a value other than `null`.
    pub fn is_set(self) -> bool {
        !matches!(self, Scalar::Absent | Scalar::Null)
    }
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Scalar::U64(n) => Some(n),
            _ => None,
        }
    }
    /// An integer-valued parameter (`max_tokens`, `n`, `best_of`, `top_logprobs`) read by
    /// what it means, not by how it is spelled: a JSON number with an integral value,
    /// however written (`100`, `100.0`, `1e2`, `1E+2`), is that value, saturating at
    /// `u64::MAX` (`18446744073709551616` or `1e30` is very large, not absent); absent or
    /// `null` is `None`. Anything else, a negative or fractional number, a string (even
    /// `"100"`), a boolean, an array or an object, is not a count.
    pub fn count(self) -> Result<Option<u64>, NotACount> {
        match self {
            Scalar::Absent | Scalar::Null => Ok(None),
            Scalar::U64(n) => Ok(Some(n)),
            // `as` saturates: 2^64 and beyond read as u64::MAX. An infinite value cannot
            // come from serde_json (it refuses numbers out of range); its `fract` is NaN,
            // so it would be refused here too. `-0.0` is zero.
            Scalar::Number(x) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
            _ => Err(NotACount),
        }
    }
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Scalar::U64(n) => Some(n as f64),
            Scalar::Number(x) => Some(x),
            _ => None,
        }
    }
    pub fn as_bool(self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// An item of `messages` or `input`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    /// The item is a JSON object (anything else has neither role nor content).
    pub object: bool,
    /// It has a `role` key (whatever its value).
    pub has_role: bool,
    /// `role`, when it is a string (the usual roles without an allocation).
    pub role: Option<Cow<'static, str>>,
    /// The text of `content` (pieces of [`View::texts`]).
    pub content: Range<u32>,
    /// The rest of the item's text: `text` and `input_text` of an object, or all the text
    /// of an item that is not an object.
    pub rest: Range<u32>,
}

/// `messages` / `input`: an array of items, or any other value (its text).
#[derive(Debug, Clone, PartialEq)]
pub enum Items {
    List(Vec<Item>),
    Other(Range<u32>),
}

/// What one pass over the body found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Every piece of text, in the order of the body.
    pub texts: Vec<Text>,
    pub instructions: Option<Range<u32>>,
    pub system: Option<Range<u32>>,
    pub prompt: Option<Range<u32>>,
    pub messages: Option<Items>,
    pub input: Option<Items>,
    pub model: Option<Arc<str>>,
    pub stream: Scalar,
    pub stream_options: Scalar,
    pub include_usage: Scalar,
    pub max_tokens: Scalar,
    pub max_completion_tokens: Scalar,
    pub max_output_tokens: Scalar,
    pub n: Scalar,
    pub best_of: Scalar,
    pub temperature: Scalar,
    pub logprobs: Scalar,
    pub top_logprobs: Scalar,
    pub logit_bias: Scalar,
    /// `reasoning` of `/v1/responses` (`{"effort", "summary"}`): its shape...
    pub reasoning: Scalar,
    /// ...and whether it asks for a summary of the reasoning (`summary` set, not `null`).
    pub reasoning_summary: bool,
    /// `include` (Responses) names reasoning content (`reasoning.encrypted_content`).
    pub include_reasoning: bool,
    /// `thinking` of the Messages API (`{"type": "enabled", "budget_tokens"}`): its shape...
    pub thinking: Scalar,
    /// ...and whether it turns thinking on (a `type` other than `disabled`).
    pub thinking_on: bool,
}

/// A parameter that should be a count (see [`Scalar::count`]) is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotACount;

/// The body is not a JSON object.
#[derive(Debug)]
pub struct NotAnObject;

impl View {
    /// Reads `body`, which must be one JSON object.
    ///
    /// From bytes, serde_json checks the UTF-8 of each string on its own, a call per
    /// string; a body that is valid UTF-8 as a whole (nearly all) is checked in one pass
    /// and read as text instead. Any other body is read as before, for the same error.
    pub fn parse(body: &[u8]) -> Result<Result<View, NotAnObject>, serde_json::Error> {
        // A body that is not UTF-8 is refused either way (serde_json checks every string,
        // skipped ones too); read from bytes it gets serde_json's own error.
        match std::str::from_utf8(body) {
            Ok(text) => View::parse_from(serde_json::Deserializer::from_str(text), body),
            Err(_) => View::parse_from(serde_json::Deserializer::from_slice(body), body),
        }
    }

    fn parse_from<'de, R: serde_json::de::Read<'de>>(
        mut de: serde_json::Deserializer<R>,
        body: &'de [u8],
    ) -> Result<Result<View, NotAnObject>, serde_json::Error> {
        let mut view = View::default();
        let is_object = Top { view: &mut view, base: Base::of(body) }.deserialize(&mut de)?;
        de.end()?;
        Ok(if is_object { Ok(view) } else { Err(NotAnObject) })
    }

    /// The text of a piece (`body` is the body this view was parsed from).
    pub fn text<'a>(&'a self, body: &'a [u8], t: &'a Text) -> &'a str {
        match t {
            // The parser took the range from a string it read from `body`: valid UTF-8.
            Text::Raw(a, b) => std::str::from_utf8(&body[*a as usize..*b as usize]).unwrap_or(""),
            Text::Owned(s) => s,
        }
    }

    /// The texts of a range of pieces.
    pub fn texts_in<'a>(&'a self, body: &'a [u8], r: &Range<u32>) -> impl Iterator<Item = &'a str> + 'a {
        self.texts[r.start as usize..r.end as usize].iter().map(move |t| self.text(body, t))
    }
}

/// Where the body starts in memory, to turn a borrowed string into a range.
#[derive(Clone, Copy)]
struct Base {
    start: usize,
    len: usize,
}

impl Base {
    fn of(body: &[u8]) -> Base {
        Base { start: body.as_ptr() as usize, len: body.len() }
    }

    fn text(self, s: &str) -> Text {
        let at = (s.as_ptr() as usize).wrapping_sub(self.start);
        if at <= self.len && s.len() <= self.len - at && self.len <= u32::MAX as usize {
            Text::Raw(at as u32, (at + s.len()) as u32)
        } else {
            Text::Owned(s.into())
        }
    }
}

/// The top-level object.
struct Top<'v> {
    view: &'v mut View,
    base: Base,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    /// Whether the body was an object.
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let v = self.view;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "instructions" => {
                    v.instructions = Some(map.next_value_seed(Texts { out: &mut v.texts, base: self.base })?)
                }
                "system" => v.system = Some(map.next_value_seed(Texts { out: &mut v.texts, base: self.base })?),
                "prompt" => v.prompt = Some(map.next_value_seed(Texts { out: &mut v.texts, base: self.base })?),
                "messages" => v.messages = Some(map.next_value_seed(ItemsSeed { out: &mut v.texts, base: self.base })?),
                "input" => v.input = Some(map.next_value_seed(ItemsSeed { out: &mut v.texts, base: self.base })?),
                "model" => v.model = map.next_value_seed(StrSeed(PhantomData))?,
                "stream" => v.stream = map.next_value_seed(ScalarSeed)?,
                "stream_options" => {
                    let (shape, include_usage) = map.next_value_seed(StreamOptions)?;
                    v.stream_options = shape;
                    v.include_usage = include_usage;
                }
                "max_tokens" => v.max_tokens = map.next_value_seed(ScalarSeed)?,
                "max_completion_tokens" => v.max_completion_tokens = map.next_value_seed(ScalarSeed)?,
                "max_output_tokens" => v.max_output_tokens = map.next_value_seed(ScalarSeed)?,
                "n" => v.n = map.next_value_seed(ScalarSeed)?,
                "best_of" => v.best_of = map.next_value_seed(ScalarSeed)?,
                "temperature" => v.temperature = map.next_value_seed(ScalarSeed)?,
                "logprobs" => v.logprobs = map.next_value_seed(ScalarSeed)?,
                "top_logprobs" => v.top_logprobs = map.next_value_seed(ScalarSeed)?,
                "logit_bias" => v.logit_bias = map.next_value_seed(ScalarSeed)?,
                // Small and rare: read as a tree (serde_json checks it as it would).
                "reasoning" => {
                    let value = map.next_value::<serde_json::Value>()?;
                    v.reasoning = shape(&value);
                    v.reasoning_summary = value.get("summary").is_some_and(|s| !s.is_null());
                }
                "include" => {
                    let value = map.next_value::<serde_json::Value>()?;
                    v.include_reasoning = value.as_array().is_some_and(|items| {
                        items.iter().any(|i| i.as_str().is_some_and(|s| s.starts_with("reasoning")))
                    });
                }
                "thinking" => {
                    let value = map.next_value::<serde_json::Value>()?;
                    v.thinking = shape(&value);
                    v.thinking_on =
                        value.get("type").and_then(|t| t.as_str()).is_some_and(|t| !t.eq_ignore_ascii_case("disabled"));
                }
                _ => {
                    map.next_value::<Ignored>()?;
                }
            }
        }
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<Ignored>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// The shape of a value read as a tree.
fn shape(v: &serde_json::Value) -> Scalar {
    use serde_json::Value;
    match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => n.as_u64().map(Scalar::U64).unwrap_or_else(|| Scalar::Number(n.as_f64().unwrap_or(0.0))),
        Value::String(_) => Scalar::Str,
        Value::Array(_) => Scalar::Array,
        Value::Object(m) => Scalar::Object { empty: m.is_empty() },
    }
}

/// A value read only to get past it, checked as serde_json checks a value it keeps:
/// numbers in range, `\u` escapes that make characters, UTF-8. serde's `IgnoredAny`
/// skips a value without these checks, and the reader must take exactly the bodies
/// serde_json takes: `upstream_body` parses an edited body again (a body it could not
/// parse would go upstream unedited), and so may the upstream.
struct Ignored;

impl<'de> de::Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Ignored)
    }
}

impl<'de> Visitor<'de> for Ignored {
    type Value = Ignored;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Ignored, E> {
        Ok(Ignored)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ignored, A::Error> {
        while seq.next_element::<Ignored>()?.is_some() {}
        Ok(Ignored)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ignored, A::Error> {
        while map.next_entry::<Ignored, Ignored>()?.is_some() {}
        Ok(Ignored)
    }
}

/// An object key, borrowed when it needs no unescaping.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Every string a value holds, as prompt text (see the module docs); returns the range of
/// pieces it added.
struct Texts<'o> {
    out: &'o mut Vec<Text>,
    base: Base,
}

impl<'de> DeserializeSeed<'de> for Texts<'_> {
    type Value = Range<u32>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Range<u32>, D::Error> {
        let start = self.out.len() as u32;
        d.deserialize_any(TextVisitor { out: self.out, base: self.base })?;
        Ok(start..self.out.len() as u32)
    }
}

struct TextVisitor<'o> {
    out: &'o mut Vec<Text>,
    base: Base,
}

/// The text-bearing keys of an object, in the order their text counts.
const TEXT_KEYS: [&str; 3] = ["content", "text", "input_text"];

impl<'de> Visitor<'de> for TextVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.out.push(self.base.text(s));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.out.push(Text::Owned(s.into()));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Texts { out: &mut *self.out, base: self.base })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Each text key's pieces, collected where they come, then put in key order.
        let mut found: [Option<Range<u32>>; 3] = [None, None, None];
        let start = self.out.len();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match TEXT_KEYS.iter().position(|k| *k == &*key.0) {
                Some(i) => {
                    let r = map.next_value_seed(Texts { out: &mut *self.out, base: self.base })?;
                    if let Some(old) = found[i].replace(r) {
                        // A repeated key: only the last value counts.
                        remove_pieces(self.out, &mut found, old);
                    }
                }
                None => {
                    map.next_value::<Ignored>()?;
                }
            }
        }
        put_in_key_order(self.out, start, &found);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Drops the pieces in `gone` (a repeated key's earlier value) and shifts the ranges
/// found after it.
fn remove_pieces(out: &mut Vec<Text>, found: &mut [Option<Range<u32>>], gone: Range<u32>) {
    let n = gone.end - gone.start;
    out.drain(gone.start as usize..gone.end as usize);
    for r in found.iter_mut().flatten() {
        if r.start >= gone.end {
            *r = r.start - n..r.end - n;
        }
    }
}

/// Reorders the pieces after `start` so that each key's come in the order of `found`.
fn put_in_key_order(out: &mut Vec<Text>, start: usize, found: &[Option<Range<u32>>]) {
    let in_order = found.iter().flatten().zip(found.iter().flatten().skip(1)).all(|(a, b)| a.end <= b.start);
    if in_order {
        return;
    }
    let mut sorted = Vec::with_capacity(out.len() - start);
    for r in found.iter().flatten() {
        sorted.extend_from_slice(&out[r.start as usize..r.end as usize]);
    }
    out.truncate(start);
    out.extend(sorted);
}

/// `messages` / `input`.
struct ItemsSeed<'o> {
    out: &'o mut Vec<Text>,
    base: Base,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Items;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Items, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Items;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed { out: &mut *self.out, base: self.base })? {
            items.push(item);
        }
        Ok(Items::List(items))
    }
    // Anything else: its text (a map is read as text, like any value).
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Items, A::Error> {
        let start = self.out.len() as u32;
        TextVisitor { out: &mut *self.out, base: self.base }.visit_map(map)?;
        Ok(Items::Other(start..self.out.len() as u32))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Items, E> {
        let start = self.out.len() as u32;
        self.out.push(self.base.text(s));
        Ok(Items::Other(start..start + 1))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Items, E> {
        let start = self.out.len() as u32;
        self.out.push(Text::Owned(s.into()));
        Ok(Items::Other(start..start + 1))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Items, E> {
        Ok(self.nothing())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Items, E> {
        Ok(self.nothing())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Items, E> {
        Ok(self.nothing())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Items, E> {
        Ok(self.nothing())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Items, E> {
        Ok(self.nothing())
    }
}

impl ItemsSeed<'_> {
    fn nothing(&self) -> Items {
        let at = self.out.len() as u32;
        Items::Other(at..at)
    }
}

/// One item of `messages` / `input`.
struct ItemSeed<'o> {
    out: &'o mut Vec<Text>,
    base: Base,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut item = Item { object: true, ..Item::default() };
        let mut found: [Option<Range<u32>>; 3] = [None, None, None];
        let start = self.out.len();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if &*key.0 == "role" {
                item.has_role = true;
                item.role = map.next_value_seed(StrSeed(PhantomData))?;
                continue;
            }
            match TEXT_KEYS.iter().position(|k| *k == &*key.0) {
                Some(i) => {
                    let r = map.next_value_seed(Texts { out: &mut *self.out, base: self.base })?;
                    if let Some(old) = found[i].replace(r) {
                        remove_pieces(self.out, &mut found, old);
                    }
                }
                None => {
                    map.next_value::<Ignored>()?;
                }
            }
        }
        put_in_key_order(self.out, start, &found);
        // After reordering: content first, then text and input_text.
        let content_len = found[0].as_ref().map_or(0, |r| r.end - r.start);
        let (start, end) = (start as u32, self.out.len() as u32);
        item.content = start..start + content_len;
        item.rest = start + content_len..end;
        Ok(item)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
        let start = self.out.len() as u32;
        TextVisitor { out: &mut *self.out, base: self.base }.visit_seq(seq)?;
        Ok(self.other(start))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Item, E> {
        let start = self.out.len() as u32;
        self.out.push(self.base.text(s));
        Ok(self.other(start))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Item, E> {
        let start = self.out.len() as u32;
        self.out.push(Text::Owned(s.into()));
        Ok(self.other(start))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item, E> {
        Ok(self.other(self.out.len() as u32))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Item, E> {
        Ok(self.other(self.out.len() as u32))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Item, E> {
        Ok(self.other(self.out.len() as u32))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Item, E> {
        Ok(self.other(self.out.len() as u32))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
        Ok(self.other(self.out.len() as u32))
    }
}

impl ItemSeed<'_> {
    /// An item that is not an object: no role, no content, its text is the rest.
    fn other(&self, start: u32) -> Item {
        let end = self.out.len() as u32;
        Item { object: false, has_role: false, role: None, content: start..start, rest: start..end }
    }
}

/// A string value (anything else reads as `None`), kept as a `T`.
struct StrSeed<T>(PhantomData<T>);

/// How [`StrSeed`] keeps a string.
trait KeptStr: Sized {
    fn keep(s: &str) -> Self;
}

/// The model name: shared by the request, its exchange and its audit record.
impl KeptStr for Arc<str> {
    fn keep(s: &str) -> Self {
        Arc::from(s)
    }
}

/// A message role: one of a handful of words, so the usual ones are not allocated.
impl KeptStr for Cow<'static, str> {
    fn keep(s: &str) -> Self {
        const ROLES: [&str; 6] = ["user", "assistant", "system", "developer", "tool", "function"];
        match ROLES.iter().find(|r| **r == s) {
            Some(r) => Cow::Borrowed(r),
            None => Cow::Owned(s.to_owned()),
        }
    }
}

impl<'de, T: KeptStr> DeserializeSeed<'de> for StrSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: KeptStr> Visitor<'de> for StrSeed<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(T::keep(s)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Ignored>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Ignored, Ignored>()?.is_some() {}
        Ok(None)
    }
}

/// The shape of a parameter's value.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
        Ok(if n >= 0 { Scalar::U64(n as u64) } else { Scalar::Number(n as f64) })
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
        Ok(Scalar::U64(n))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Scalar, E> {
        Ok(Scalar::Number(x))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<Ignored>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        let mut empty = true;
        while map.next_entry::<Ignored, Ignored>()?.is_some() {
            empty = false;
        }
        Ok(Scalar::Object { empty })
    }
}

/// `stream_options`: its shape, and `include_usage` in it.
struct StreamOptions;

impl<'de> DeserializeSeed<'de> for StreamOptions {
    type Value = (Scalar, Scalar);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StreamOptions {
    type Value = (Scalar, Scalar);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut empty, mut include_usage) = (true, Scalar::Absent);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            empty = false;
            if &*key.0 == "include_usage" {
                include_usage = map.next_value_seed(ScalarSeed)?;
            } else {
                map.next_value::<Ignored>()?;
            }
        }
        Ok((Scalar::Object { empty }, include_usage))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok((Scalar::Bool(b), Scalar::Absent))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok((ScalarSeed.visit_i64(n)?, Scalar::Absent))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok((Scalar::U64(n), Scalar::Absent))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        Ok((Scalar::Number(x), Scalar::Absent))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok((Scalar::Str, Scalar::Absent))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Scalar::Null, Scalar::Absent))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Ignored>()?.is_some() {}
        Ok((Scalar::Array, Scalar::Absent))
    }
}
