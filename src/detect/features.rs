//! Per-request features: pure functions of one request body. Everything the per-account
//! and cross-account state needs from the text is computed here once, so the text itself
//! is never kept (apart from a short excerpt for evidence).

use std::sync::OnceLock;

use regex::Regex;

use crate::llm::{Item, Items, LlmRequest, Scalar, View};

use super::sketch::{fnv1a_extend, simhash, FNV_OFFSET};

/// System prompts at least this long are treated as a product persona.
pub const PERSONA_CHARS: u32 = 80;

/// What one request tells the detector.
#[derive(Debug, Clone, Default)]
pub struct RequestFeatures {
    /// The request carries text the detector could read (an LLM call with a body).
    pub has_text: bool,
    /// No earlier turns: one user message and no assistant message.
    pub single_turn: bool,
    /// Hash of the system prompt / instructions (0 = none).
    pub system_hash: u64,
    /// Length of the system prompt in characters.
    pub system_chars: u32,
    /// Hash of the normalised user text (exact repeats).
    pub prompt_hash: u64,
    /// The exact hashes of the conversation's first and previous user messages (0 when
    /// there are none), as [`RequestFeatures::prompt_hash`] hashed them when they were
    /// the prompt: a conversation the account held has sent them before.
    pub history: [u64; 2],
    /// SimHash of the user text's word shingles (near-duplicates).
    pub simhash: u64,
    /// Template keys of the user text: fixed prefix, fixed suffix, line shape (0 = none).
    pub template_keys: [u64; 3],
    /// The reasoning-elicitation pattern matched, if any.
    pub reasoning: Option<&'static str>,
    /// `logprobs`/`top_logprobs` asked for.
    pub logprobs: bool,
    pub top_logprobs: u32,
    pub logit_bias: bool,
    /// Completions asked for (`n`, `best_of`).
    pub n: u32,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u64>,
    pub user_chars: u32,
    /// The start of the user text, for evidence samples.
    pub excerpt: String,
    /// The system prompt / instructions ask for reasoning or training data (whatever its
    /// length: such a prompt is not a product persona and earns no product discount).
    pub system_elicits: bool,
    /// Hash of the model named (0 = none): part of the client's fingerprint.
    pub model_hash: u64,
    pub stream: bool,
    /// A cheap fixed embedding of the user text: masked word unigrams and bigrams hashed
    /// into [`EMBED_DIMS`] signed buckets (a random projection of the n-gram counts),
    /// L2-normalised and scaled to ±127. No model weights.
    pub embed: [i8; EMBED_DIMS],
}

/// Dimensions of [`RequestFeatures::embed`].
pub const EMBED_DIMS: usize = 32;

impl RequestFeatures {
    /// Soft labels: token probabilities, several samples, or biased logits.
    pub fn soft_labels(&self) -> bool {
        self.logprobs || self.top_logprobs > 0 || self.logit_bias || self.n > 1
    }
}

/// Reasoning-elicitation phrases (chain-of-thought coercion), in several languages. Each
/// entry is (label, pattern); patterns are matched case-insensitively on the user text and
/// the system prompt.
pub const REASONING_PATTERNS: &[(&str, &str)] = &[
    ("en:step_by_step", r"step[\s-]*by[\s-]*step|step-wise|stepwise"),
    ("en:boxed", r"[\\]boxed|final answer (with)?in"),
    (
        "en:show_reasoning",
        r"(show|explain|articulate|describe|detail|write out|walk (me )?through|lay out|spell out|outline|expose|reveal|provide|give)\s+(me\s+)?(all\s+|each\s+|every\s+|the\s+|your\s+|of\s+)*((full|complete|entire|detailed|internal|underlying|intermediate|hidden)\s+)*(reasoning|work|working|thought process|thinking|chain of thought|rationale|derivation|logic|steps)",
    ),
    (
        "en:chain_of_thought",
        r"chain[\s-]of[\s-]thoughts?|\bcot\b|thought process|internal reasoning|inner monologue|reasoning trace|scratchpad",
    ),
    (
        "en:think",
        r"let'?s think|think (carefully|aloud|out loud|it through|through)|reason (carefully|through|about each)|before answering,? (think|reason)|reason it out",
    ),
    (
        "en:intermediate",
        r"intermediate (steps|reasoning|results|calculations|work)|each step of|every step|all (the )?steps|(each|every) (logical|single) step",
    ),
    (
        "en:visible_reasoning",
        r"(transparent|exhaustive|explicit|visible|complete|full|entire|detailed|thorough)[\w\s,]{0,24}\b(reasoning|derivation|thought process|chain of thought|thinking|working|deliberation)|think(ing)? out loud|(reasoning|thinking|work|working) (visible|in full|explicitly)|show (your|the|all) (thinking|work|working|calculations)|(reason|think)(ing)? (exhaustively|transparently|explicitly)",
    ),
    (
        "fr",
        r"étape par étape|etape par etape|raisonne[zr]?\b|raisonnement|montre[zr]? (ton|votre) (travail|raisonnement)",
    ),
    ("es", r"paso a paso|razona(r|miento)?\b|muestra (tu|el) razonamiento|pensamiento"),
    ("pt", r"passo a passo|raciocínio|raciocine|mostre (seu|o) raciocínio"),
    (
        "de",
        r"schritt für schritt|schritt-für-schritt|schrittweise|denk(e|en|t)? (gründlich|sorgfältig|schrittweise|nach)|begründ|gedankengang|überlegung|denkweg|zwischenschritt",
    ),
    ("it", r"passo dopo passo|passo passo|ragiona(mento)?\b|spiega il (tuo )?ragionamento"),
    ("nl", r"stap voor stap|redeneer|redenering"),
    ("pl", r"krok po kroku|rozumowanie"),
    ("tr", r"adım adım|akıl yürüt"),
    ("ru", r"шаг за шагом|пошагово|по шагам|рассужд|ход мысл|цепочк[аеу] рассуждений"),
    ("uk", r"крок за кроком|міркуван"),
    ("zh", r"一步一步|一步步|逐步|分步|推理过程|思考过程|思维链|详细推理|请推理|展示.*推理|解题过程"),
    ("ja", r"ステップバイステップ|段階的に|順を追って|一歩ずつ|推論過程|思考過程|考え方を|推論して"),
    ("ko", r"단계별로|차근차근|단계적으로|추론 과정|사고 과정"),
    ("ar", r"خطوة بخطوة|خطوة خطوة|اشرح تفكيرك|استدلال"),
    ("hi", r"चरण दर चरण|क़दम दर क़दम|कदम दर कदम|तर्क"),
    ("vi", r"từng bước|suy luận"),
    ("id", r"langkah demi langkah|langkah-langkah|penalaran"),
    ("fa", r"گام به گام|قدم به قدم"),
    ("he", r"צעד אחר צעד|שלב אחר שלב"),
    ("th", r"ทีละขั้นตอน"),
    ("sv", r"steg för steg|resonera"),
    (
        "en:training_data",
        r"training (data|examples|set|corpus)|fine-?tun(e|ing) (data|set|corpus|examples)|for (a|my|our) (training )?dataset|synthetic (data|dataset|examples|training)|distill(ation|ing)? (data|dataset|a model)|as a teacher model|teacher (model|outputs)",
    ),
];

struct Reasoning {
    /// All patterns as one alternation: one lazy-DFA pass over the text.
    any: Regex,
    /// Each pattern alone, to name the one that matched (only for matching texts).
    each: Vec<Regex>,
}

fn reasoning() -> &'static Reasoning {
    static R: OnceLock<Reasoning> = OnceLock::new();
    R.get_or_init(|| {
        // ASCII word boundaries keep the whole set in the lazy DFA (Unicode `\b` would
        // force the slow NFA simulation on every request).
        let ascii = |p: &str| p.replace(r"\b", r"(?-u:\b)");
        let any = REASONING_PATTERNS.iter().map(|(_, p)| format!("(?:{})", ascii(p))).collect::<Vec<_>>().join("|");
        Reasoning {
            // The alternation's lazy DFA outgrows the default 2 MiB cache on long texts,
            // which it then clears and rebuilds over and over (backtest: 30k records/s
            // with the default, 42k with this).
            any: regex::RegexBuilder::new(&format!("(?i){any}"))
                .dfa_size_limit(32 << 20)
                .build()
                .expect("reasoning patterns compile"),
            each: REASONING_PATTERNS
                .iter()
                .map(|(_, p)| Regex::new(&format!("(?i){}", ascii(p))).expect("reasoning pattern compiles"))
                .collect(),
        }
    })
}

/// The first reasoning-elicitation pattern `text` matches.
pub fn reasoning_match(text: &str) -> Option<&'static str> {
    let r = reasoning();
    if !r.any.is_match(text) {
        return None;
    }
    r.each.iter().position(|re| re.is_match(text)).map(|i| REASONING_PATTERNS[i].0)
}

/// Words read from a prompt: the first 4096 (a long prompt's shingles and template keys
/// come from its start; its exact hash still covers all of it).
const MAX_WORDS: usize = 4096;

/// Words of a text with the variable parts masked: lowercase, digits → `#`, quoted spans
/// → `"q"`. Words are split on whitespace and punctuation; punctuation is dropped.
pub fn masked_words(text: &str) -> MaskedWords {
    if text.is_ascii() {
        return masked_ascii_words(text.as_bytes());
    }
    masked_any_words(text)
}

/// [`masked_words`] for any text.
fn masked_any_words(text: &str) -> MaskedWords {
    // All words in one buffer, so a long prompt costs two allocations, not one per word.
    let mut w = MaskedWords { buf: String::with_capacity(text.len()), ends: Vec::new() };
    let mut in_quote = false;
    for ch in text.chars() {
        // A word is complete whenever the count grows, so none is left half-built here.
        if w.len() >= MAX_WORDS {
            break;
        }
        if ch == '"' || ch == '“' || ch == '”' || ch == '«' || ch == '»' {
            w.flush();
            if !in_quote {
                w.buf.push_str("\"q\"");
                w.flush();
            }
            in_quote = !in_quote;
            continue;
        }
        if in_quote {
            continue;
        }
        if ch.is_ascii_alphanumeric() {
            if ch.is_ascii_digit() {
                if !w.current().ends_with('#') {
                    w.buf.push('#');
                }
            } else {
                w.buf.push(ch.to_ascii_lowercase());
            }
        } else if ch.is_alphanumeric() {
            w.buf.extend(ch.to_lowercase());
        } else {
            w.flush();
        }
        // CJK has no spaces: every ideograph is its own word.
        if is_cjk(ch) {
            w.flush();
        }
    }
    w.flush();
    w.truncate(MAX_WORDS);
    w
}

/// [`masked_words`] for ASCII text (no Unicode tables): the same words, found a word at a
/// time through a byte-class table, and a quoted span skipped with one `memchr`.
fn masked_ascii_words(text: &[u8]) -> MaskedWords {
    const SEPARATOR: u8 = 0;
    const LETTER: u8 = 1;
    const DIGIT: u8 = 2;
    const QUOTE: u8 = 3;
    static CLASS: [u8; 256] = {
        let mut t = [SEPARATOR; 256];
        let mut b = 0u8;
        while b < 128 {
            t[b as usize] = if b.is_ascii_alphabetic() {
                LETTER
            } else if b.is_ascii_digit() {
                DIGIT
            } else if b == b'"' {
                QUOTE
            } else {
                SEPARATOR
            };
            b += 1;
        }
        t
    };
    let mut buf = Vec::with_capacity(text.len());
    let mut ends = Vec::new();
    let mut i = 0;
    while i < text.len() && ends.len() < MAX_WORDS {
        match CLASS[usize::from(text[i])] {
            SEPARATOR => i += 1,
            QUOTE => {
                buf.extend_from_slice(b"\"q\"");
                ends.push(buf.len());
                // Nothing inside the quotes counts; an unclosed quote runs to the end.
                i = memchr::memchr(b'"', &text[i + 1..]).map_or(text.len(), |j| i + j + 2);
            }
            _ => {
                // Letters lowercased; a run of digits becomes one `#`.
                let start = buf.len();
                while let Some(&b) = text.get(i) {
                    match CLASS[usize::from(b)] {
                        LETTER => buf.push(b.to_ascii_lowercase()),
                        DIGIT if buf.len() == start || buf[buf.len() - 1] != b'#' => buf.push(b'#'),
                        DIGIT => {}
                        _ => break,
                    }
                    i += 1;
                }
                ends.push(buf.len());
            }
        }
    }
    MaskedWords { buf: String::from_utf8(buf).expect("ASCII in, ASCII out"), ends }
}

/// The words [`masked_words`] found, back to back in one buffer.
#[derive(Debug, Default)]
pub struct MaskedWords {
    buf: String,
    /// Where each word ends in `buf` (the next starts there).
    ends: Vec<usize>,
}

impl MaskedWords {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The words as bytes, in order (no slicing of the `str` at each word).
    fn byte_words(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let buf = self.buf.as_bytes();
        self.ends.iter().scan(0, move |start, &end| Some(&buf[std::mem::replace(start, end)..end]))
    }

    /// The word being built (after the last complete one).
    fn current(&self) -> &str {
        &self.buf[self.ends.last().copied().unwrap_or(0)..]
    }

    fn flush(&mut self) {
        if !self.current().is_empty() {
            self.ends.push(self.buf.len());
        }
    }

    /// Keeps the first `n` words.
    fn truncate(&mut self, n: usize) {
        if self.ends.len() > n {
            self.ends.truncate(n);
            self.buf.truncate(self.ends.last().copied().unwrap_or(0));
        }
    }
}

/// The first `chars` characters of `text`.
fn excerpt(text: &str, chars: usize) -> &str {
    if text.len() <= chars {
        return text;
    }
    match text.char_indices().nth(chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn is_cjk(ch: char) -> bool {
    matches!(ch as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af)
}

/// The hash of whole texts and of words that the detector keys its state on: foldhash
/// (hashbrown's default hasher) with a fixed seed, so a text hashes the same on every
/// request of a run. It reads 16 bytes per step where FNV-1a's loop reads one, which
/// took a 32 KB prompt tens of microseconds. Exact comparisons need nothing more, and
/// the HyperLogLog and SimHash spread the bits with [`super::sketch::mix`]; the values
/// live only in the detector's memory, never on disk or on the wire.
fn text_hash(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    const STATE: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x7761_7264_656e);
    let mut h = STATE.build_hasher();
    h.write(bytes);
    h.finish()
}

/// Words a template's fixed part is made of at each end.
const EDGE_WORDS: usize = 4;

/// FNV-1a of `tag` followed by `words` joined with spaces.
fn joined_hash<'a>(tag: &[u8], words: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = fnv1a_extend(FNV_OFFSET, tag);
    for (i, w) in words.enumerate() {
        if i > 0 {
            h = fnv1a_extend(h, b" ");
        }
        h = fnv1a_extend(h, w.as_bytes());
    }
    h
}

/// Template keys: the masked first and last `EDGE_WORDS` words (a fixed instruction
/// before or after the filled-in input), and the shape of the lines (list layouts).
///
/// A short instruction on a line of its own ("Summarize:", "Translate to German:") is the
/// fixed part by itself: its first words are followed by the input's, which differ on
/// every request, so the four-word edge would never repeat.
pub fn template_keys(text: &str, words: &MaskedWords) -> [u64; 3] {
    let mut keys = [0u64; 3];
    let n = words.len();
    if n >= 2 * EDGE_WORDS {
        keys[0] = short_line_key(b"p1:", text.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or_else(|| joined_hash(b"p:", (0..EDGE_WORDS).map(|i| words.get(i))));
        keys[1] = short_line_key(b"s1:", text.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or_else(|| joined_hash(b"s:", (n - EDGE_WORDS..n).map(|i| words.get(i))));
    }
    if text.lines().nth(2).is_some() {
        // Shape: per line, empty / list item / short / long.
        let mut shape = [0u8; 64];
        let mut len = 0;
        for l in text.lines().take(64) {
            let t = l.trim();
            shape[len] = if t.is_empty() {
                b'_'
            } else if t.starts_with(['-', '*', '•']) || t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                b'L'
            } else if t.len() < 40 {
                b's'
            } else {
                b'T'
            };
            len += 1;
        }
        // A plain paragraph structure says nothing; only structured layouts count.
        if shape[..len].contains(&b'L') {
            keys[2] = fnv1a_extend(fnv1a_extend(FNV_OFFSET, b"l:"), &shape[..len]);
        }
    }
    keys
}

/// The key of a first or last line shorter than [`EDGE_WORDS`] words, masked as the
/// whole text is; `None` for a longer line or a text of one line.
fn short_line_key(tag: &[u8], line: Option<&str>) -> Option<u64> {
    let line = line?.trim();
    if line.split_whitespace().nth(EDGE_WORDS - 1).is_some() {
        return None;
    }
    let w = masked_words(line);
    (!w.is_empty()).then(|| joined_hash(tag, (0..w.len()).map(|i| w.get(i))))
}

/// Extracts the features of one request from its path and body.
pub fn extract(path: &str, req: Option<&LlmRequest>) -> RequestFeatures {
    match req {
        Some(req) => {
            let mut f = from_parts(path, conversation(req), params(&req.view));
            f.model_hash = req.model.as_deref().map(|m| text_hash(m.as_bytes()).max(1)).unwrap_or(0);
            f.stream = req.stream;
            // Asking the API for the model's reasoning: `/v1/responses`'s
            // `reasoning: {effort, summary}` or `include: ["reasoning.encrypted_content"]`,
            // the Messages API's `thinking: {"type": "enabled"}` (whose thinking blocks come
            // back to the client).
            let v = &req.view;
            if f.reasoning.is_none() && f.has_text {
                if v.reasoning == (Scalar::Object { empty: false }) || v.include_reasoning {
                    f.reasoning = Some("en:reasoning_param");
                } else if v.thinking_on {
                    f.reasoning = Some("en:thinking_param");
                }
            }
            f
        }
        None => RequestFeatures { n: 1, ..Default::default() },
    }
}

/// The embedding of a text from its words' hashes (see [`RequestFeatures::embed`]).
pub fn embed(word_hashes: &[u64]) -> [i8; EMBED_DIMS] {
    let mut acc = [0f32; EMBED_DIMS];
    let mut add = |h: u64| {
        let h = super::sketch::mix(h);
        let i = (h as usize) % EMBED_DIMS;
        acc[i] += if h & (1 << 40) == 0 { 1.0 } else { -1.0 };
    };
    for (i, &w) in word_hashes.iter().enumerate() {
        add(w);
        if i > 0 {
            add(word_hashes[i - 1].rotate_left(17) ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
    }
    let norm = acc.iter().map(|v| v * v).sum::<f32>().sqrt();
    let mut out = [0i8; EMBED_DIMS];
    if norm > 0.0 {
        for (o, v) in out.iter_mut().zip(acc) {
            *o = (v / norm * 127.0).round().clamp(-127.0, 127.0) as i8;
        }
    }
    out
}

/// The prompt and its context, as the detector reads them.
#[derive(Debug, Default, PartialEq)]
struct Conversation {
    /// The last user message's text (or the prompt / input).
    user: String,
    /// System and developer messages, `instructions`, `system`.
    system: String,
    user_turns: u32,
    assistant_turns: u32,
    /// [`message_hash`] of the first and of the previous user message (0: none).
    history: [u64; 2],
}

/// The parameters the detector reads.
#[derive(Debug, Default, PartialEq)]
struct Params {
    logprobs: bool,
    top_logprobs: u32,
    logit_bias: bool,
    n: u32,
    temperature: Option<f32>,
    max_tokens: Option<u64>,
}

fn conversation(req: &LlmRequest) -> Conversation {
    let (v, raw) = (&req.view, &req.raw[..]);
    // Pieces of text joined by newlines, as the prompt text is.
    let append = |out: &mut String, r: &std::ops::Range<u32>| {
        for t in v.texts_in(raw, r) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
    };
    let mut user = String::new();
    let mut system = String::new();
    let mut user_turns = 0u32;
    let mut assistant_turns = 0u32;
    let mut history = [0u64; 2];
    let mut visit_messages = |items: &[Item], user: &mut String, system: &mut String| {
        // The last user message is the prompt; earlier turns only count as history.
        let (mut first_user, mut previous_user, mut last_user): (Option<&Item>, Option<&Item>, Option<&Item>) =
            (None, None, None);
        for m in items {
            match m.role.as_deref().unwrap_or("user") {
                "system" | "developer" => append(system, &m.content),
                "assistant" => assistant_turns += 1,
                "tool" | "function" => {}
                _ => {
                    user_turns += 1;
                    first_user = first_user.or(Some(m));
                    previous_user = last_user;
                    last_user = Some(m);
                }
            }
        }
        if let Some(m) = last_user {
            append(user, &m.content);
        }
        if let Some(prev) = previous_user {
            // A message of one text piece is hashed where it lies; only a message of
            // several pieces is joined first, as the prompt is.
            let hash_of = |m: &Item| {
                let mut pieces = v.texts_in(raw, &m.content);
                match (pieces.next(), pieces.next()) {
                    (Some(only), None) => message_hash(only),
                    _ => {
                        let mut t = String::new();
                        append(&mut t, &m.content);
                        message_hash(&t)
                    }
                }
            };
            history = [first_user.map(hash_of).unwrap_or(0), hash_of(prev)];
        }
    };
    if let Some(Items::List(items)) = &v.messages {
        visit_messages(items, &mut user, &mut system);
    } else if let Some(input) = &v.input {
        match input {
            Items::List(items) if items.iter().any(|i| i.has_role) => visit_messages(items, &mut user, &mut system),
            Items::List(items) => {
                user_turns = 1;
                for i in items {
                    append(&mut user, &i.content);
                    append(&mut user, &i.rest);
                }
            }
            Items::Other(r) => {
                user_turns = 1;
                append(&mut user, r);
            }
        }
    } else if let Some(prompt) = &v.prompt {
        user_turns = 1;
        append(&mut user, prompt);
    }
    for r in [&v.instructions, &v.system].into_iter().flatten() {
        append(&mut system, r);
    }
    Conversation { user, system, user_turns, assistant_turns, history }
}

/// The exact hash of a message's text, as the detector keys prompts.
fn message_hash(text: &str) -> u64 {
    text_hash(text.trim().as_bytes()).max(1)
}

fn params(v: &View) -> Params {
    // Counts as the policy and the limits read them (`LlmRequest::parse_bytes` refused a
    // body where one is not a count, so `ok()` loses nothing).
    let count = |s: Scalar| s.count().ok().flatten();
    Params {
        logprobs: match v.logprobs {
            Scalar::Bool(b) => b,
            Scalar::U64(n) => n > 0,
            _ => false,
        },
        top_logprobs: count(v.top_logprobs).unwrap_or(0).min(1000) as u32,
        logit_bias: v.logit_bias == Scalar::Object { empty: false },
        n: count(v.n).unwrap_or(1).max(count(v.best_of).unwrap_or(1)).clamp(1, 1000) as u32,
        temperature: v.temperature.as_f64().map(|t| t as f32),
        // The largest of the three, as `LlmRequest::max_tokens`.
        max_tokens: [v.max_tokens, v.max_completion_tokens, v.max_output_tokens].into_iter().filter_map(count).max(),
    }
}

fn from_parts(path: &str, c: Conversation, p: Params) -> RequestFeatures {
    let mut f = RequestFeatures { n: 1, ..Default::default() };
    let Conversation { user, system, user_turns, assistant_turns, history } = c;
    f.history = history;
    if path.ends_with("/embeddings") || path.ends_with("/count_tokens") {
        // Embeddings return vectors, not text, and counting a prompt returns a number:
        // nothing to harvest in the text sense.
        return f;
    }
    f.has_text = !user.is_empty();
    f.single_turn = user_turns <= 1 && assistant_turns == 0;
    if !system.is_empty() {
        f.system_hash = text_hash(system.trim().as_bytes()).max(1);
        f.system_chars = system.chars().count().min(u32::MAX as usize) as u32;
    }
    let words = masked_words(&user);
    f.prompt_hash = message_hash(&user);
    // Word 3-shingles, hashed without building strings: each word hashed once, shingles
    // combined arithmetically.
    let word_hashes: Vec<u64> = words.byte_words().map(text_hash).collect();
    f.simhash = simhash(
        word_hashes
            .windows(3)
            .map(|w| w[0].rotate_left(42) ^ w[1].rotate_left(21) ^ w[2].wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    );
    f.template_keys = template_keys(&user, &words);
    f.embed = embed(&word_hashes);
    // Intent wherever it is written: a system prompt (any length) that asks for reasoning
    // or training data counts as the user turn would, and is no product persona.
    let system_match = if system.is_empty() { None } else { reasoning_match(&system) };
    f.system_elicits = system_match.is_some();
    f.reasoning = reasoning_match(&user).or(system_match);
    f.user_chars = user.chars().count().min(u32::MAX as usize) as u32;
    f.excerpt = excerpt(&user, 160).to_owned();

    f.logprobs = p.logprobs;
    f.top_logprobs = p.top_logprobs;
    f.logit_bias = p.logit_bias;
    f.n = p.n;
    f.temperature = p.temperature;
    f.max_tokens = p.max_tokens;
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn body(v: Value) -> LlmRequest {
        LlmRequest::parse(crate::llm::LlmRoute::ChatCompletions, v.to_string().as_bytes()).unwrap()
    }

    /// How the detector and the token counter read a body before the one-pass reader
    /// (from a JSON tree): the reference the one-pass reader must agree with.
    mod tree {
        use super::super::{message_hash, Conversation, Params};
        use serde_json::{Map, Value};

        fn visit(v: &Value, f: &mut impl FnMut(&str)) {
            match v {
                Value::String(s) => f(s),
                Value::Array(items) => items.iter().for_each(|i| visit(i, f)),
                Value::Object(map) => {
                    for key in ["content", "text", "input_text"] {
                        if let Some(inner) = map.get(key) {
                            visit(inner, f);
                        }
                    }
                }
                _ => {}
            }
        }

        fn collect_text(v: &Value, out: &mut String) {
            visit(v, &mut |s| {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(s);
            });
        }

        pub fn conversation(body: &Map<String, Value>) -> Conversation {
            let mut user = String::new();
            let mut system = String::new();
            let mut user_turns = 0u32;
            let mut assistant_turns = 0u32;
            let mut history = [0u64; 2];
            let mut visit_messages = |items: &[Value], user: &mut String, system: &mut String| {
                let mut users: Vec<&Value> = Vec::new();
                for m in items {
                    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                    let content = m.get("content").unwrap_or(&Value::Null);
                    match role {
                        "system" | "developer" => collect_text(content, system),
                        "assistant" => assistant_turns += 1,
                        "tool" | "function" => {}
                        _ => {
                            user_turns += 1;
                            users.push(content);
                        }
                    }
                }
                if let Some(c) = users.last() {
                    collect_text(c, user);
                }
                if users.len() >= 2 {
                    let hash_of = |c: &Value| {
                        let mut t = String::new();
                        collect_text(c, &mut t);
                        message_hash(&t)
                    };
                    history = [hash_of(users[0]), hash_of(users[users.len() - 2])];
                }
            };
            if let Some(Value::Array(items)) = body.get("messages") {
                visit_messages(items, &mut user, &mut system);
            } else if let Some(input) = body.get("input") {
                match input {
                    Value::Array(items) if items.iter().any(|i| i.get("role").is_some()) => {
                        visit_messages(items, &mut user, &mut system)
                    }
                    other => {
                        user_turns = 1;
                        collect_text(other, &mut user);
                    }
                }
            } else if let Some(prompt) = body.get("prompt") {
                user_turns = 1;
                collect_text(prompt, &mut user);
            }
            for key in ["instructions", "system"] {
                if let Some(v) = body.get(key) {
                    collect_text(v, &mut system);
                }
            }
            Conversation { user, system, user_turns, assistant_turns, history }
        }

        /// The keys of the counts, in the order `LlmRequest::parse_bytes` checks them.
        const COUNTS: [&str; 6] =
            ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "top_logprobs"];

        /// A count by its meaning: `Ok(None)` when absent or null, the value of a
        /// non-negative integral number (saturating), `Err` for anything else.
        fn count(v: Option<&Value>) -> Result<Option<u64>, &'static str> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                    (Some(u), _) => Ok(Some(u)),
                    (None, Some(x)) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
                    _ => Err("not a count"),
                },
                Some(_) => Err("not a count"),
            }
        }

        /// The first count the body sets to something else (the request is refused).
        pub fn not_a_count(body: &Map<String, Value>) -> Option<&'static str> {
            COUNTS.into_iter().find(|k| count(body.get(*k)).is_err())
        }

        pub fn params(body: &Map<String, Value>) -> Params {
            let int = |k: &str| count(body.get(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
            Params {
                logprobs: match body.get("logprobs") {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::Number(n)) => n.as_u64().unwrap_or(0) > 0,
                    _ => false,
                },
                top_logprobs: int("top_logprobs").unwrap_or(0).min(1000) as u32,
                logit_bias: body.get("logit_bias").and_then(Value::as_object).is_some_and(|m| !m.is_empty()),
                n: int("n").unwrap_or(1).max(int("best_of").unwrap_or(1)).clamp(1, 1000) as u32,
                temperature: body.get("temperature").and_then(Value::as_f64).map(|t| t as f32),
                max_tokens: int("max_tokens").max(int("max_completion_tokens")).max(int("max_output_tokens")),
            }
        }

        /// The token counter's pieces (text, newest).
        pub fn prompt_parts(body: &Map<String, Value>) -> Vec<(String, bool)> {
            let mut out = Vec::new();
            for key in ["instructions", "messages", "prompt", "input", "system"] {
                let Some(v) = body.get(key) else { continue };
                match (key, v) {
                    ("messages" | "input", Value::Array(items)) => {
                        let last = items.len().saturating_sub(1);
                        for (i, item) in items.iter().enumerate() {
                            visit(item, &mut |t| out.push((t.to_string(), i == last)));
                        }
                    }
                    ("messages" | "input" | "prompt", v) => visit(v, &mut |t| out.push((t.to_string(), true))),
                    (_, v) => visit(v, &mut |t| out.push((t.to_string(), false))),
                }
            }
            out
        }

        pub fn message_count(body: &Map<String, Value>) -> usize {
            ["messages", "input"].iter().find_map(|k| body.get(*k).and_then(Value::as_array).map(Vec::len)).unwrap_or(1)
        }
    }

    /// Checks the one-pass reader against the tree on one body.
    fn agrees(text: &str) {
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else { panic!("not an object: {text}") };
        let req = match LlmRequest::parse(crate::llm::LlmRoute::ChatCompletions, text.as_bytes()) {
            Ok(req) => req,
            Err(crate::error::ProxyError::InvalidRequest { param: Some(param), .. }) => {
                // A count that is not one (`"n": -1`): refused, and the tree finds it too.
                // The rest of the body must still read the same: again without it.
                assert_eq!(tree::not_a_count(&map), Some(param.as_str()), "{text}");
                map.remove(&param);
                return agrees(&Value::Object(map).to_string());
            }
            Err(e) => panic!("{text}: {e:?}"),
        };
        assert_eq!(tree::not_a_count(&map), None, "{text}");
        assert_eq!(conversation(&req), tree::conversation(&map), "{text}");
        assert_eq!(params(&req.view), tree::params(&map), "{text}");
        let mut parts = Vec::new();
        req.for_each_prompt_part(|t, newest| parts.push((t.to_string(), newest)));
        assert_eq!(parts, tree::prompt_parts(&map), "{text}");
        assert_eq!(req.message_count(), tree::message_count(&map), "{text}");
        assert_eq!(req.model.as_deref(), map.get("model").and_then(Value::as_str), "{text}");
    }

    /// Real prompts from the corpora, in every request shape of the API.
    #[test]
    fn one_pass_reading_agrees_with_the_tree_on_the_corpora() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/corpora");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines().step_by(5) {
                let rec: Value = serde_json::from_str(line).unwrap();
                let texts: Vec<String> = match (&rec["prompt"], &rec["turns"]) {
                    (Value::String(p), _) => vec![p.clone()],
                    (_, Value::Array(t)) => t.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                    _ => continue,
                };
                let last = texts.last().cloned().unwrap_or_default();
                let mut messages = vec![json!({"role": "system", "content": "You are helpful.\nBe brief."})];
                for (i, t) in texts.iter().enumerate() {
                    let role = if i % 2 == 0 { "user" } else { "assistant" };
                    messages.push(json!({"role": role, "content": t}));
                }
                let parts = json!([{"type": "text", "text": last}, {"type": "image_url", "image_url": {"url": "x"}}]);
                for body in [
                    json!({"model": "m", "messages": messages, "max_tokens": 64, "temperature": 0.2}),
                    json!({"model": "m", "messages": [{"role": "user", "content": parts}], "logprobs": true, "top_logprobs": 5}),
                    json!({"model": "m", "prompt": last, "logprobs": 3, "best_of": 4, "n": 2}),
                    json!({"model": "m", "instructions": "Answer.", "input": [{"role": "user", "content": [{"type": "input_text", "text": last}]}]}),
                    json!({"model": "m", "input": last, "max_output_tokens": 100}),
                    json!({"model": "m", "input": [last, {"text": last}]}),
                    json!({"model": "m", "system": last, "messages": "not a list", "prompt": [last, last]}),
                ] {
                    agrees(&body.to_string());
                    checked += 1;
                }
            }
        }
        assert!(checked > 2000, "{checked}");
        // Escapes, duplicate keys, odd shapes, pretty printing.
        for text in [
            r#"{"messages":[{"role":"user","content":"a\nb \"q\" \u00e9 \ud83d\ude00"}],"model":"x\ty"}"#,
            r#"{"messages":[{"content":"first","role":"user","content":"second"}]}"#,
            r#"{"messages":[{"text":"t","content":"c","input_text":"i"}],"messages":[{"role":null,"content":[1,null,{"content":"deep"}]}]}"#,
            r#"{"input":[{"role":"assistant","content":"a"},"bare",{"text":"x","content":"y"}],"input":[{"type":"message"}]}"#,
            r#"{"prompt":{"text":"t","content":{"input_text":"i"}},"n":-1,"best_of":2.0,"temperature":1,"logit_bias":{},"logprobs":0}"#,
            "{\n  \"model\" : \"m\",\n  \"messages\" : [ { \"role\" : \"developer\", \"content\" : \"rules\" } ]\n}",
            r#"{"logit_bias":{"12":-100},"max_tokens":"5","max_completion_tokens":7,"n":null,"stream_options":{"include_usage":true}}"#,
            r#"{"messages":[{"role":"user","content":"x","text":"1","text":"2","content":"y"}]}"#,
        ] {
            agrees(text);
        }
    }

    #[test]
    fn excerpts_cut_at_characters_not_bytes() {
        assert_eq!(excerpt("hello", 3), "hel");
        assert_eq!(excerpt("hello", 5), "hello");
        assert_eq!(excerpt("hé", 1), "h");
        assert_eq!(excerpt("ééé", 2), "éé");
        assert_eq!(excerpt("ééé", 3), "ééé");
        assert_eq!(excerpt("ééé", 4), "ééé");
        let long = "ü".repeat(200);
        assert_eq!(excerpt(&long, 160), long.chars().take(160).collect::<String>());
    }

    proptest::proptest! {
        /// The ASCII fast path finds the same words as the general one.
        #[test]
        fn ascii_masked_words_are_the_general_ones(text in "[ -~\\n\\t]{0,200}") {
            let fast = masked_ascii_words(text.as_bytes());
            let general = masked_any_words(&text);
            proptest::prop_assert_eq!(fast.iter().collect::<Vec<_>>(), general.iter().collect::<Vec<_>>());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Long texts too, where both stop at the cap, quotes and digits included.
        #[test]
        fn ascii_masked_words_stop_where_the_general_ones_do_on_any_text(
            unit in "[a-zA-Z0-9\" .]{1,9}",
            reps in 400usize..3000,
        ) {
            let text = unit.repeat(reps);
            let fast = masked_ascii_words(text.as_bytes());
            let general = masked_any_words(&text);
            proptest::prop_assert_eq!(fast.iter().collect::<Vec<_>>(), general.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn ascii_masked_words_stop_where_the_general_ones_do() {
        let long = "w1 \"q\" 22 x ".repeat(3000);
        assert_eq!(
            masked_ascii_words(long.as_bytes()).iter().collect::<Vec<_>>(),
            masked_any_words(&long).iter().collect::<Vec<_>>()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any body made of the keys warden reads, nested in any way, is read the same.
        #[test]
        fn one_pass_reading_agrees_with_the_tree_on_any_shape(body in body_strategy()) {
            agrees(&body.to_string());
        }
    }

    fn body_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..5).prop_map(Value::from),
            (0.0f64..2.0).prop_map(Value::from),
            "[a-z \n\"\\\\é]{0,8}".prop_map(Value::String),
        ];
        let keys = ["role", "content", "text", "input_text", "type", "user", "system", "assistant", "other"];
        let value = leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec((proptest::sample::select(keys.to_vec()), inner), 0..5).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
                }),
            ]
        });
        let top = [
            "model",
            "messages",
            "input",
            "prompt",
            "instructions",
            "system",
            "stream_options",
            "max_tokens",
            "max_completion_tokens",
            "max_output_tokens",
            "n",
            "best_of",
            "temperature",
            "logprobs",
            "top_logprobs",
            "logit_bias",
            "extra",
        ];
        proptest::collection::vec((proptest::sample::select(top.to_vec()), value), 0..8)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    #[test]
    fn reasoning_elicitation_in_several_languages() {
        for text in [
            "Please reason step by step, and put your final answer within \\boxed{}.",
            "Articulate the internal reasoning behind your answer.",
            "Show your work.",
            "Raisonne étape par étape avant de répondre.",
            "Razona paso a paso.",
            "Denke Schritt für Schritt nach.",
            "请一步一步地推理。",
            "ステップバイステップで考えてください。",
            "Рассуждай шаг за шагом.",
            "단계별로 설명해 주세요.",
            "Let's think about it carefully.",
        ] {
            assert!(reasoning_match(text).is_some(), "{text}");
        }
        for text in [
            "What is the capital of France?",
            "Write a haiku about autumn leaves.",
            "Translate 'good morning' into Italian.",
            "How do I reset my password?",
        ] {
            assert_eq!(reasoning_match(text), None, "{text}");
        }
    }

    #[test]
    fn template_keys_survive_filled_values() {
        let a = "Found the following article online, use it to answer the question: Who wrote it?\n\nThe 1994 book was written by Ann.";
        let b = "Found the following article online, use it to answer the question: When did it open?\n\nThe museum opened in 2001 after 3 years.";
        let ka = template_keys(a, &masked_words(a));
        let kb = template_keys(b, &masked_words(b));
        assert_eq!(ka[0], kb[0], "same fixed prefix");
        assert_ne!(ka[1], kb[1], "different endings");
        let c = "Q: what is 12 + 30? Answer with a number only please";
        let d = "Q: what is 7 + 1? Answer with a number only please";
        assert_eq!(template_keys(c, &masked_words(c)), template_keys(d, &masked_words(d)));
        // A short instruction on its own line is the fixed part, before or after.
        let e = "Summarize:\nThe council met on Tuesday to discuss the new bridge over the river.";
        let f = "Summarize:\nQuarterly revenue rose as shipments of the new phone doubled.";
        let (ke, kf) = (template_keys(e, &masked_words(e)), template_keys(f, &masked_words(f)));
        assert_eq!(ke[0], kf[0], "same short first line");
        assert_ne!(ke[1], kf[1]);
        let g = "The council met on Tuesday to discuss the new bridge over the river.\nTL;DR please:";
        let h = "Quarterly revenue rose as shipments of the new phone doubled.\nTL;DR please:";
        assert_eq!(template_keys(g, &masked_words(g))[1], template_keys(h, &masked_words(h))[1]);
        // A one-line prompt keeps the four-word edges.
        let i = "Summarize: the council met on Tuesday to discuss the new bridge.";
        assert_ne!(template_keys(i, &masked_words(i))[0], ke[0]);
    }

    #[test]
    fn chat_features() {
        let f = extract(
            "/v1/chat/completions",
            Some(&body(json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "You are a support bot for Acme."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "Explain step by step how to reset my router."}
                ],
                "logprobs": true, "top_logprobs": 5, "n": 3, "temperature": 0.7, "max_tokens": 4096
            }))),
        );
        assert!(f.has_text);
        assert!(!f.single_turn);
        assert_ne!(f.system_hash, 0);
        assert_eq!(f.reasoning, Some("en:step_by_step"));
        assert!(f.soft_labels());
        assert_eq!((f.top_logprobs, f.n, f.max_tokens), (5, 3, Some(4096)));
        assert!(f.excerpt.starts_with("Explain step by step"));
    }

    #[test]
    fn completions_and_responses_bodies() {
        let f = extract("/v1/completions", Some(&body(json!({"model": "m", "prompt": "Say hi", "logprobs": 5}))));
        assert!(f.has_text && f.single_turn && f.logprobs);
        let r = extract(
            "/v1/responses",
            Some(&body(json!({"model": "m", "instructions": "Be brief.", "input": "Think step by step: 2+2?"}))),
        );
        assert!(r.single_turn);
        assert_ne!(r.system_hash, 0);
        assert!(r.reasoning.is_some());
        let e = extract("/v1/embeddings", Some(&body(json!({"model": "m", "input": "step by step"}))));
        assert!(!e.has_text);
    }

    #[test]
    fn a_messages_body_reads_as_the_same_conversation_in_chat() {
        let messages = |req: Value| {
            let bytes = req.to_string();
            LlmRequest::parse(crate::llm::LlmRoute::Messages, bytes.as_bytes()).unwrap()
        };
        let anthropic = extract(
            "/v1/messages",
            Some(&messages(json!({
                "model": "claude", "max_tokens": 1024,
                "system": [{"type": "text", "text": "You are a support bot for Acme."}],
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                    {"role": "user", "content": [{"type": "text", "text": "Reset my router, please."}]}
                ]
            }))),
        );
        let chat = extract(
            "/v1/chat/completions",
            Some(&body(json!({
                "model": "claude", "max_tokens": 1024,
                "messages": [
                    {"role": "system", "content": "You are a support bot for Acme."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "Reset my router, please."}
                ]
            }))),
        );
        assert_eq!(format!("{anthropic:?}"), format!("{chat:?}"), "one conversation, whichever API carries it");
        assert_eq!(anthropic.reasoning, None);
        // Thinking asked for (its blocks come back to the client) is the reasoning signal,
        // as `reasoning` is on `/v1/responses`; turned off, it is not.
        let thinking = |kind: &str| {
            extract(
                "/v1/messages",
                Some(&messages(json!({
                    "model": "claude", "max_tokens": 4096, "thinking": {"type": kind, "budget_tokens": 2048},
                    "messages": [{"role": "user", "content": "Is 91 prime?"}]
                }))),
            )
            .reasoning
        };
        assert_eq!(thinking("enabled"), Some("en:thinking_param"));
        assert_eq!(thinking("disabled"), None);
        let responses = |extra: Value| {
            let mut req = json!({"model": "o", "input": "Is 91 prime?"});
            req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let bytes = req.to_string();
            let r = LlmRequest::parse(crate::llm::LlmRoute::Responses, bytes.as_bytes()).unwrap();
            extract("/v1/responses", Some(&r)).reasoning
        };
        assert_eq!(responses(json!({"include": ["reasoning.encrypted_content"]})), Some("en:reasoning_param"));
        assert_eq!(responses(json!({"reasoning": {"summary": "detailed"}})), Some("en:reasoning_param"));
        assert_eq!(responses(json!({"include": ["file_search_call.results"]})), None);
    }

    #[test]
    fn masking_numbers_and_quotes() {
        assert_eq!(
            masked_words("Add 12 and 345, \"quoted stuff\" ok").iter().collect::<Vec<_>>(),
            ["add", "#", "and", "#", "\"q\"", "ok"]
        );
    }
}
