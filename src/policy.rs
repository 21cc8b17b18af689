//! Parameter policy per tier: which models may be called, caps on `n` and `max_tokens`,
//! and what happens to `logprobs`/`top_logprobs` and `logit_bias` (allowed, stripped,
//! or rejected). Stripping is how a provider keeps soft labels (log-probabilities) away
//! from untrusted tiers without breaking their clients.
//!
//! A pure function of the tier and the request; a refused request gets 400 naming the
//! parameter. The counts it caps were read by their value when the body was parsed
//! ([`crate::llm::Scalar::count`]: `5e6` is 5000000, a string or a negative number was
//! already refused there), and the `max_tokens` cap holds for each of
//! [`crate::llm::MAX_TOKENS_KEYS`] the body sets.

use crate::error::ProxyError;
use crate::llm::{LlmRequest, Scalar};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRule {
    Allow,
    Strip,
    Reject,
}

impl ParamRule {
    pub fn parse(s: &str) -> Option<ParamRule> {
        match s {
            "allow" => Some(ParamRule::Allow),
            "strip" => Some(ParamRule::Strip),
            "reject" => Some(ParamRule::Reject),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamPolicy {
    /// Models the tier may call; empty means any.
    pub allowed_models: Vec<String>,
    pub max_n: Option<u64>,
    pub max_tokens: Option<u64>,
    pub logprobs: ParamRule,
    pub logit_bias: ParamRule,
    /// `reasoning = "strip"`: reasoning content (Anthropic `thinking` blocks, the
    /// `reasoning_content` of OpenAI-compatible reasoning servers, `/v1/responses`
    /// reasoning items) is removed from responses (see [`crate::accounting`]).
    pub strip_reasoning: bool,
}

impl Default for ParamPolicy {
    fn default() -> Self {
        ParamPolicy {
            allowed_models: Vec::new(),
            max_n: None,
            max_tokens: None,
            logprobs: ParamRule::Allow,
            logit_bias: ParamRule::Allow,
            strip_reasoning: false,
        }
    }
}

/// What the policy did to an admitted request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Parameters removed before forwarding.
    pub stripped: Vec<&'static str>,
}

fn invalid(param: &str, message: String) -> ProxyError {
    ProxyError::InvalidRequest { message, param: Some(param.to_string()) }
}

fn above_cap(param: &str, asked: u64, max: u64) -> ProxyError {
    // A value beyond u64 was read as u64::MAX.
    let at_least = if asked == u64::MAX { "at least " } else { "" };
    invalid(param, format!("`{param}` is {at_least}{asked}, above the maximum of {max} on your plan."))
}

/// Checks `req` against `policy`; marks what must be stripped (the forwarded body is then
/// re-serialized). Errors name the parameter.
pub fn apply(policy: &ParamPolicy, req: &mut LlmRequest) -> Result<Applied, ProxyError> {
    let mut applied = Applied::default();
    if !policy.allowed_models.is_empty() {
        match &req.model {
            Some(m) if policy.allowed_models.iter().any(|a| **a == **m) => {}
            Some(m) => {
                return Err(invalid(
                    "model",
                    format!(
                        "The model `{m}` is not available on your plan. Allowed: {}.",
                        policy.allowed_models.join(", ")
                    ),
                ))
            }
            None => return Err(invalid("model", "A `model` is required.".into())),
        }
    }
    // The values were read by their meaning when the body was parsed (`5e6`, `100.0`; a
    // string or a negative number was refused there), so the caps hold for every spelling.
    if let (Some(max), Some(n)) = (policy.max_n, req.n) {
        if n > max {
            return Err(above_cap("n", n, max));
        }
    }
    if let Some(max) = policy.max_tokens {
        // Every key the body sets, not only the one the upstream may read.
        if let Some((param, asked)) = req.max_tokens_each().find(|(_, asked)| *asked > max) {
            return Err(above_cap(param, asked, max));
        }
    }
    let (logprobs, top_logprobs) = (req.view.logprobs, req.view.top_logprobs);
    let uses_logprobs =
        !matches!(logprobs, Scalar::Absent | Scalar::Null | Scalar::Bool(false)) || top_logprobs.is_set();
    if uses_logprobs {
        match policy.logprobs {
            ParamRule::Allow => {}
            ParamRule::Reject => {
                let param = if logprobs.is_present() { "logprobs" } else { "top_logprobs" };
                return Err(invalid(param, format!("`{param}` is not available on your plan.")));
            }
            ParamRule::Strip => {
                for (key, v) in [("logprobs", logprobs), ("top_logprobs", top_logprobs)] {
                    if v.is_present() && strip(req, key) {
                        applied.stripped.push(key);
                    }
                }
            }
        }
    }
    if req.view.logit_bias.is_set() {
        match policy.logit_bias {
            ParamRule::Allow => {}
            ParamRule::Reject => {
                return Err(invalid("logit_bias", "`logit_bias` is not available on your plan.".into()))
            }
            ParamRule::Strip => {
                if strip(req, "logit_bias") {
                    applied.stripped.push("logit_bias");
                }
            }
        }
    }
    Ok(applied)
}

/// Marks `key` for removal from the forwarded body; false if it already was.
fn strip(req: &mut LlmRequest, key: &'static str) -> bool {
    if req.strip.contains(&key) {
        return false;
    }
    req.strip.push(key);
    true
}

/// Removes every soft-label parameter (`logprobs`, `top_logprobs`, `logit_bias`) and caps
/// `n`/`best_of` at 1: the detector's `strip` action for an account under suspicion.
pub fn strip_soft_labels(req: &mut LlmRequest) -> Vec<&'static str> {
    let mut stripped = Vec::new();
    let v = &req.view;
    let present = [("logprobs", v.logprobs), ("top_logprobs", v.top_logprobs), ("logit_bias", v.logit_bias)];
    let counts = [("n", v.n), ("best_of", v.best_of)];
    for (key, value) in present {
        if value.is_present() && strip(req, key) {
            stripped.push(key);
        }
    }
    for (key, value) in counts {
        // `2.0` and `2e0` are 2 (the body was checked when parsed: no error here).
        if value.count().ok().flatten().is_some_and(|n| n > 1) && !req.cap.contains(&key) {
            req.cap.push(key);
            stripped.push(key);
        }
    }
    if req.n.is_some_and(|n| n > 1) {
        req.n = Some(1);
    }
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::LlmRoute;

    fn req(body: &str) -> LlmRequest {
        LlmRequest::parse(LlmRoute::ChatCompletions, body.as_bytes()).unwrap()
    }

    fn param_of(e: ProxyError) -> String {
        match e {
            ProxyError::InvalidRequest { param, .. } => param.unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn models_n_and_max_tokens_are_capped() {
        let p = ParamPolicy {
            allowed_models: vec!["small".into()],
            max_n: Some(1),
            max_tokens: Some(100),
            ..Default::default()
        };
        assert!(apply(&p, &mut req(r#"{"model":"small","n":1,"max_tokens":100}"#)).is_ok());
        assert_eq!(param_of(apply(&p, &mut req(r#"{"model":"big"}"#)).unwrap_err()), "model");
        assert_eq!(param_of(apply(&p, &mut req(r#"{"model":"small","n":2}"#)).unwrap_err()), "n");
        assert_eq!(param_of(apply(&p, &mut req(r#"{"model":"small","max_tokens":101}"#)).unwrap_err()), "max_tokens");
        assert_eq!(
            param_of(apply(&p, &mut req(r#"{"model":"small","max_completion_tokens":500}"#)).unwrap_err()),
            "max_completion_tokens"
        );
    }

    /// The tier of the issue.
    fn capped() -> ParamPolicy {
        ParamPolicy { max_n: Some(4), max_tokens: Some(1_000_000), ..Default::default() }
    }

    /// Parsing and the policy, as the proxy runs them: what was admitted, or the
    /// parameter a 400 names.
    fn admit(policy: &ParamPolicy, body: &str) -> Result<LlmRequest, String> {
        let refused = |e: ProxyError| {
            assert_eq!(e.status(), 400, "{body}: {e:?}");
            assert_eq!(e.code(), "invalid_request", "{body}: {e:?}");
            param_of(e)
        };
        let mut r = LlmRequest::parse(LlmRoute::ChatCompletions, body.as_bytes()).map_err(refused)?;
        apply(policy, &mut r).map_err(refused)?;
        Ok(r)
    }

    #[test]
    fn the_caps_hold_for_every_spelling_of_a_number() {
        let p = capped();
        // The values of the issue, all forwarded before.
        for (value, param) in [
            ("5000000.0", "max_tokens"),
            ("5e6", "max_tokens"),
            ("\"5000000\"", "max_tokens"),
            ("18446744073709551616", "max_tokens"),
            ("100.0", "n"),
            ("1e2", "n"),
            ("\"100\"", "n"),
            ("-1", "n"),
        ] {
            let body = format!(r#"{{"model":"m","{param}":{value},"messages":[]}}"#);
            assert_eq!(admit(&p, &body).unwrap_err(), param, "{body}");
        }
        // Nor anything else that is not a non-negative integer, under a cap or not.
        for policy in [capped(), ParamPolicy::default()] {
            for value in ["5.5", "true", "[]", "{}", "-0.5", "\"\""] {
                for param in
                    ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "top_logprobs"]
                {
                    let body = format!(r#"{{"model":"m","{param}":{value}}}"#);
                    assert_eq!(admit(&policy, &body).unwrap_err(), param, "{body}");
                }
            }
        }
        // `null` is absent; the caps themselves and anything below them pass, however
        // they are written.
        let r = admit(&p, r#"{"max_tokens":null,"n":null}"#).unwrap();
        assert_eq!((r.max_tokens, r.n), (None, None));
        let r = admit(&p, r#"{"max_tokens":1e6,"n":4.0}"#).unwrap();
        assert_eq!((r.max_tokens, r.n), (Some(1_000_000), Some(4)));
        let r = admit(&p, r#"{"max_completion_tokens":1000000,"n":4e0}"#).unwrap();
        assert_eq!((r.max_tokens, r.n), (Some(1_000_000), Some(4)));
        // The message says what was read, also for a value beyond u64.
        let e = apply(&p, &mut req(r#"{"max_tokens":1e30}"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`max_tokens` is at least 18446744073709551615, above the maximum of 1000000 on your plan."
        );
        let e = apply(&p, &mut req(r#"{"n":1e2}"#)).unwrap_err();
        assert_eq!(e.to_string(), "`n` is 100, above the maximum of 4 on your plan.");
    }

    #[test]
    fn the_cap_holds_for_each_max_tokens_key() {
        let p = capped();
        assert_eq!(admit(&p, r#"{"max_tokens":10,"max_completion_tokens":5e9}"#).unwrap_err(), "max_completion_tokens");
        assert_eq!(admit(&p, r#"{"max_output_tokens":2e6,"max_tokens":10}"#).unwrap_err(), "max_output_tokens");
        assert_eq!(admit(&p, r#"{"max_tokens":2e6,"max_completion_tokens":3e6}"#).unwrap_err(), "max_tokens");
        // All within the cap: the largest is reserved.
        let r = admit(&p, r#"{"max_tokens":10,"max_completion_tokens":1e6,"max_output_tokens":5}"#).unwrap();
        assert_eq!(r.max_tokens, Some(1_000_000));
        assert_eq!(
            r.max_tokens_each().collect::<Vec<_>>(),
            [("max_tokens", 10), ("max_completion_tokens", 1_000_000), ("max_output_tokens", 5)]
        );
    }

    #[test]
    fn soft_label_stripping_caps_counts_however_they_are_written() {
        for body in [r#"{"n":2.0,"best_of":2e0}"#, r#"{"n":20E-1,"best_of":3}"#] {
            let mut r = req(body);
            assert_eq!(strip_soft_labels(&mut r), ["n", "best_of"], "{body}");
            let forwarded: serde_json::Value = serde_json::from_slice(&r.upstream_body()).unwrap();
            assert_eq!(forwarded, serde_json::json!({"n": 1, "best_of": 1}), "{body}");
            assert_eq!(r.n, Some(1));
        }
        let mut r = req(r#"{"n":1.0,"best_of":null}"#);
        assert!(strip_soft_labels(&mut r).is_empty());
        assert!(!r.modified());
    }

    #[test]
    fn logprobs_and_logit_bias_follow_their_rules() {
        let strip = ParamPolicy { logprobs: ParamRule::Strip, logit_bias: ParamRule::Strip, ..Default::default() };
        let mut r = req(r#"{"model":"m","logprobs":true,"top_logprobs":5,"logit_bias":{"1":5}}"#);
        let applied = apply(&strip, &mut r).unwrap();
        assert_eq!(applied.stripped, ["logprobs", "top_logprobs", "logit_bias"]);
        let forwarded: serde_json::Value = serde_json::from_slice(&r.upstream_body()).unwrap();
        assert!(forwarded.get("logprobs").is_none() && forwarded.get("logit_bias").is_none(), "{forwarded}");
        assert_eq!(forwarded["model"], "m");
        // The detector's strip on top: nothing twice; n capped.
        let mut r = req(r#"{"model":"m","logprobs":true,"n":3}"#);
        apply(&strip, &mut r).unwrap();
        assert_eq!(strip_soft_labels(&mut r), ["n"]);
        let forwarded: serde_json::Value = serde_json::from_slice(&r.upstream_body()).unwrap();
        assert_eq!(forwarded, serde_json::json!({"model": "m", "n": 1}));
        assert_eq!(r.n, Some(1));

        let reject = ParamPolicy { logprobs: ParamRule::Reject, logit_bias: ParamRule::Reject, ..Default::default() };
        assert_eq!(param_of(apply(&reject, &mut req(r#"{"logprobs":true}"#)).unwrap_err()), "logprobs");
        assert_eq!(param_of(apply(&reject, &mut req(r#"{"logit_bias":{"1":1}}"#)).unwrap_err()), "logit_bias");
        // `logprobs: false` is not a use of logprobs.
        assert!(apply(&reject, &mut req(r#"{"logprobs":false}"#)).is_ok());
        assert!(apply(&ParamPolicy::default(), &mut req(r#"{"logprobs":true}"#)).is_ok());
    }

    /// The proptest's reference: the same body read through a `serde_json::Value`.
    mod reference {
        use serde_json::Value;

        /// The integer-valued parameters, in the order a request is checked.
        pub const COUNTS: [&str; 6] =
            ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "top_logprobs"];
        const MAX_TOKENS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

        /// What was admitted, or why not.
        #[derive(Debug, PartialEq, Eq)]
        pub enum Outcome {
            /// Not JSON (or a number JSON cannot hold, like `1e400`).
            Malformed,
            /// 400 naming the parameter.
            Refused(String),
            /// Admitted: the budget reserved (`max_tokens`), `n`, and what the detector's
            /// strip caps at 1.
            Admitted { max_tokens: Option<u64>, n: Option<u64>, capped: Vec<&'static str> },
        }

        /// A count by its meaning: an integral value `>= 0` of a number, as u64 or f64,
        /// saturating; `None` when absent or null; anything else refused.
        fn count(v: Option<&Value>) -> Result<Option<u64>, ()> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                    (Some(u), _) => Ok(Some(u)),
                    (None, Some(x)) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
                    _ => Err(()),
                },
                Some(_) => Err(()),
            }
        }

        pub fn outcome(policy: &super::ParamPolicy, text: &str) -> Outcome {
            let Ok(Value::Object(body)) = serde_json::from_str::<Value>(text) else { return Outcome::Malformed };
            let mut read = std::collections::HashMap::new();
            for key in COUNTS {
                match count(body.get(key)) {
                    Ok(v) => read.insert(key, v),
                    Err(()) => return Outcome::Refused(key.into()),
                };
            }
            let n = read["n"];
            if let (Some(max), Some(n)) = (policy.max_n, n) {
                if n > max {
                    return Outcome::Refused("n".into());
                }
            }
            if let Some(max) = policy.max_tokens {
                if let Some(key) = MAX_TOKENS.into_iter().find(|k| read[k].is_some_and(|v| v > max)) {
                    return Outcome::Refused(key.into());
                }
            }
            let max_tokens = MAX_TOKENS.into_iter().filter_map(|k| read[k]).max();
            let capped = ["n", "best_of"].into_iter().filter(|k| read[k].is_some_and(|v| v > 1)).collect();
            Outcome::Admitted { max_tokens, n, capped }
        }
    }

    /// What the one-pass reader and the policy make of a body, in the reference's terms.
    fn outcome(policy: &ParamPolicy, text: &str) -> reference::Outcome {
        use reference::Outcome;
        let refused = |e: ProxyError| match e {
            ProxyError::MalformedJson(_) => Outcome::Malformed,
            e => {
                assert_eq!((e.status().as_u16(), e.code()), (400, "invalid_request"), "{text}: {e:?}");
                Outcome::Refused(param_of(e))
            }
        };
        let mut r = match LlmRequest::parse(LlmRoute::ChatCompletions, text.as_bytes()) {
            Ok(r) => r,
            Err(e) => return refused(e),
        };
        if let Err(e) = apply(policy, &mut r) {
            return refused(e);
        }
        let (max_tokens, n) = (r.max_tokens, r.n);
        let capped: Vec<_> = strip_soft_labels(&mut r).into_iter().filter(|k| ["n", "best_of"].contains(k)).collect();
        // What is capped is forwarded as 1.
        let forwarded: serde_json::Value = serde_json::from_slice(&r.upstream_body()).unwrap();
        for key in &capped {
            assert_eq!(forwarded[key], 1, "{text}");
        }
        Outcome::Admitted { max_tokens, n, capped }
    }

    /// A JSON spelling of a value a count parameter may be sent with.
    fn spelling() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let int = prop_oneof![0u64..8, 0u64..2_000_000, any::<u64>(), Just(u64::MAX)];
        let exp = proptest::sample::select(vec!["e", "E", "e+", "E+"]);
        prop_oneof![
            int.clone().prop_map(|n| n.to_string()),
            int.clone().prop_map(|n| format!("{n}.0")),
            (0u64..100, exp.clone(), 0u32..25).prop_map(|(m, e, k)| format!("{m}{e}{k}")),
            // Integral or not: 50e-1, 5e-1.
            (0u64..100_000, 0u32..6).prop_map(|(m, k)| format!("{m}e-{k}")),
            (0u64..100, 1u32..100, exp, 0u32..8).prop_map(|(m, f, e, k)| format!("{m}.{f}{e}{k}")),
            (0u64..100, 1u32..10).prop_map(|(m, f)| format!("{m}.{f}")),
            int.clone().prop_map(|n| format!("-{n}")),
            int.clone().prop_map(|n| format!("-{n}.0")),
            // Beyond u64.
            (1u64..u64::MAX, 0u32..30).prop_map(|(n, zeros)| format!("{n}{}", "0".repeat(zeros as usize))),
            int.prop_map(|n| format!("\"{n}\"")),
            proptest::sample::select(vec![
                "18446744073709551616",
                "1e30",
                "1.7e308",
                "1e400",
                "-0",
                "-0.0",
                "0e0",
                "null",
                "true",
                "false",
                "[]",
                "[1]",
                "{}",
                r#"{"n":1}"#,
                r#""""#,
                r#""5e6""#,
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// A policy with or without each cap.
    fn policy() -> impl proptest::strategy::Strategy<Value = ParamPolicy> {
        use proptest::prelude::*;
        let max_n = proptest::option::of(prop_oneof![0u64..6, Just(u64::MAX)]);
        let max_tokens = proptest::option::of(prop_oneof![0u64..3, Just(1_000_000u64), any::<u64>()]);
        (max_n, max_tokens).prop_map(|(max_n, max_tokens)| ParamPolicy { max_n, max_tokens, ..Default::default() })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// Bodies with the count parameters in many spellings, some repeated (the last one
        /// counts), some with an escaped key: the one-pass reader and the policy agree with
        /// a reading through serde_json on what is refused, the parameter named and the
        /// values used.
        #[test]
        fn counts_agree_with_a_reading_through_serde_json(
            pairs in proptest::collection::vec(
                (proptest::sample::select(reference::COUNTS.to_vec()), spelling(), proptest::bool::weighted(0.1)),
                0..8,
            ),
            policy in policy(),
        ) {
            let mut text = String::from(r#"{"model":"m""#);
            for (key, value, escaped) in &pairs {
                let key = if *escaped { format!("\\u{:04x}{}", key.as_bytes()[0], &key[1..]) } else { key.to_string() };
                text.push_str(&format!(r#","{key}":{value}"#));
            }
            text.push_str(r#","messages":[{"role":"user","content":"hi"}]}"#);
            proptest::prop_assert_eq!(outcome(&policy, &text), reference::outcome(&policy, &text), "{}", text);
        }
    }
}
