//! Warden: a reverse proxy in front of an LLM API that authenticates callers, enforces
//! usage policy and records every request.
//!
//! # Layout
//! Layers, bottom up. **A module imports only modules listed above it** (checked by
//! `tests/layers.rs`, which reads this list): the leaves import nothing of warden, the
//! detection engine only request understanding, and the request path sits on top of
//! everything it uses.
//!
//! ## 1. Leaves
//! - [`clock`]: time, random ids, RFC 3339 formatting and parsing.
//! - [`worker`]: which proxy worker thread runs the current code.
//! - [`settings`]: configuration building blocks: every problem at once, section reading, shared checks.
//! - [`metrics`]: label sets and buckets the subsystems' metrics share.
//! - [`body`]: the response body type, bounded and paced request bodies.
//! - [`tokens`]: offline token counting.
//! - [`net`]: listeners, connection caps, idle and first-byte watches, `[server]` settings.
//! - [`auth_failures`]: failed authentication throttled per client address.
//! - [`telemetry`]: logs (`tracing`), `[logging]` settings.
//!
//! ## 2. Limits and request understanding
//! - [`limits`]: rate limits, concurrency, token quotas (local and Redis), `[limits]`, `[redis]`.
//! - [`error`]: the errors warden answers with, in the OpenAI shape.
//! - [`llm`]: request understanding for the LLM routes (model, stream, parameters, prompt tokens).
//! - [`policy`]: the parameter policy (models, caps, soft-label parameters).
//! - [`tiers`]: `[[tiers]]`: an account's plan, its limits and policy.
//!
//! ## 3. Engines
//! - [`detect`]: the detection library: features, sketches, per-account and cluster scoring, backtest reader.
//! - [`auth`]: key format and hashing; the in-memory directory of accounts and keys; `[admin]`.
//! - [`routes`]: route policy (default deny), query strings without credentials.
//! - [`upstream`]: the pooled upstream client, header rewriting, timeouts; `[upstream]`.
//! - [`accounting`]: the response tap: streams bodies through, reads usage and text.
//!
//! ## 4. Records and state
//! - [`events`]: `RequestEvent`, the one record of each request; the audit log; request metrics.
//! - [`store`]: durable records in SQLite or PostgreSQL (sqlx `Any`); `[storage]`.
//! - [`accounts`]: accounts and keys as a service (store + directory kept in step).
//!
//! ## 5. Services
//! - [`detector`]: the detector in `serve`: the engine on its own thread, alerts persisted and acted on.
//!
//! ## 6. Assembly
//! - [`config`]: the sections assembled into a `Config`; what a reload changes.
//! - [`app`]: everything built from a `Config`: shared state, metrics registry, reload.
//!
//! ## 7. Request path and serving
//! - [`batch`]: the Files and Batch APIs: batch files read line by line, ownership of files and batches.
//! - [`stack`]: the request path, top to bottom, one step per line.
//! - [`admin`]: admin API, dashboard, `/metrics`, `/healthz`, `/readyz`.
//! - [`server`]: proxy workers and graceful shutdown over the listeners.
//!
//! ## 8. Command line and tools
//! - [`mock_llm`]: an OpenAI-compatible mock upstream for the demo, tests and benches.
//! - [`client`]: the admin API client the CLI uses.
//! - [`cli`]: the reviewer and operator commands.
//! - [`demo`]: `warden demo`.

pub mod accounting;
pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod auth_failures;
pub mod batch;
pub mod body;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod detect;
pub mod detector;
pub mod error;
pub mod events;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod mock_llm;
pub mod net;
pub mod policy;
pub mod routes;
pub mod server;
pub mod settings;
pub mod stack;
pub mod store;
pub mod telemetry;
pub mod tiers;
pub mod tokens;
pub mod upstream;
pub mod worker;
