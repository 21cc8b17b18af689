//! Token counting with a real tokenizer (o200k_base, the encoding of current OpenAI
//! models), working offline. Loading the tables takes a fraction of a second, so one
//! [`TokenCounter`] is built at start-up and shared.

use std::sync::Arc;

use tiktoken_rs::CoreBPE;

#[derive(Clone)]
pub struct TokenCounter {
    bpe: Arc<CoreBPE>,
}

impl TokenCounter {
    pub fn new() -> TokenCounter {
        let bpe = tiktoken_rs::o200k_base().expect("the o200k tables are compiled in");
        TokenCounter { bpe: Arc::new(bpe) }
    }

    pub fn count(&self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe.encode_ordinary(text).len() as u64
    }
}

impl Default for TokenCounter {
    fn default() -> Self {
        TokenCounter::new()
    }
}
