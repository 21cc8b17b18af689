//! Parameter policy per tier: which models may be called, caps on `n` and `max_tokens`,
//! and what happens to `logprobs`/`top_logprobs` and `logit_bias` (allowed, stripped,
//! or rejected). Stripping is how a provider keeps soft labels (log-probabilities) away
//! from untrusted tiers without breaking their clients.
//!
//! A pure function of the tier and the request; a refused request gets 400 naming the
//! parameter.

use serde_json::Value;

use crate::error::ProxyError;
use crate::llm::LlmRequest;

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

/// Checks `req` against `policy`; strips what must be stripped (the body is then
/// re-serialized by the caller). Errors name the parameter.
pub fn apply(policy: &ParamPolicy, req: &mut LlmRequest) -> Result<Applied, ProxyError> {
    let mut applied = Applied::default();
    if !policy.allowed_models.is_empty() {
        match &req.model {
            Some(m) if policy.allowed_models.iter().any(|a| a == m) => {}
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
            let param = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
                .into_iter()
                .find(|k| req.body.contains_key(*k))
                .unwrap_or("max_tokens");
            return Err(invalid(param, format!("`{param}` is {asked}, above the maximum of {max} on your plan.")));
        }
    }
    let uses_logprobs = req.body.get("logprobs").is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)))
        || req.body.get("top_logprobs").is_some_and(|v| !v.is_null());
    if uses_logprobs {
        match policy.logprobs {
            ParamRule::Allow => {}
            ParamRule::Reject => {
                let param = if req.body.contains_key("logprobs") { "logprobs" } else { "top_logprobs" };
                return Err(invalid(param, format!("`{param}` is not available on your plan.")));
            }
            ParamRule::Strip => {
                for key in ["logprobs", "top_logprobs"] {
                    if req.body.remove(key).is_some() {
                        applied.stripped.push(key);
                    }
                }
            }
        }
    }
    if req.body.get("logit_bias").is_some_and(|v| !v.is_null()) {
        match policy.logit_bias {
            ParamRule::Allow => {}
            ParamRule::Reject => {
                return Err(invalid("logit_bias", "`logit_bias` is not available on your plan.".into()))
            }
            ParamRule::Strip => {
                req.body.remove("logit_bias");
                applied.stripped.push("logit_bias");
            }
        }
    }
    Ok(applied)
}

/// Removes every soft-label parameter (`logprobs`, `top_logprobs`, `logit_bias`) and caps
/// `n`/`best_of` at 1: the detector's `strip` action for an account under suspicion.
pub fn strip_soft_labels(req: &mut LlmRequest) -> Vec<&'static str> {
    let mut stripped = Vec::new();
    for key in ["logprobs", "top_logprobs", "logit_bias"] {
        if req.body.remove(key).is_some() {
            stripped.push(key);
        }
    }
    for key in ["n", "best_of"] {
        if req.body.get(key).and_then(Value::as_u64).is_some_and(|n| n > 1) {
            req.body.insert(key.to_string(), Value::from(1));
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
        assert!(!r.body.contains_key("logprobs") && !r.body.contains_key("logit_bias"));

        let reject = ParamPolicy { logprobs: ParamRule::Reject, logit_bias: ParamRule::Reject, ..Default::default() };
        assert_eq!(param_of(apply(&reject, &mut req(r#"{"logprobs":true}"#)).unwrap_err()), "logprobs");
        assert_eq!(param_of(apply(&reject, &mut req(r#"{"logit_bias":{"1":1}}"#)).unwrap_err()), "logit_bias");
        // `logprobs: false` is not a use of logprobs.
        assert!(apply(&reject, &mut req(r#"{"logprobs":false}"#)).is_ok());
        assert!(apply(&ParamPolicy::default(), &mut req(r#"{"logprobs":true}"#)).is_ok());
    }
}
