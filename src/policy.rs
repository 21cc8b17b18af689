//! Parameter policy per tier: which models may be called, caps on `n` and `max_tokens`,
//! and what happens to `logprobs`/`top_logprobs` and `logit_bias` (allowed, stripped,
//! or rejected). Stripping is how a provider keeps soft labels (log-probabilities) away
//! from untrusted tiers without breaking their clients.
//!
//! A pure function of the tier and the request; a refused request gets 400 naming the
//! parameter.

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
}

impl Default for ParamPolicy {
    fn default() -> Self {
        ParamPolicy {
            allowed_models: Vec::new(),
            max_n: None,
            max_tokens: None,
            logprobs: ParamRule::Allow,
            logit_bias: ParamRule::Allow,
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
    if let (Some(max), Some(n)) = (policy.max_n, req.n) {
        if n > max {
            return Err(invalid("n", format!("`n` is {n}, above the maximum of {max} on your plan.")));
        }
    }
    if let (Some(max), Some(asked)) = (policy.max_tokens, req.max_tokens) {
        if asked > max {
            let param = req.max_tokens_key().unwrap_or("max_tokens");
            return Err(invalid(param, format!("`{param}` is {asked}, above the maximum of {max} on your plan.")));
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
        if value.as_u64().is_some_and(|n| n > 1) && !req.cap.contains(&key) {
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
}
