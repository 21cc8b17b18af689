//! Warden: a reverse proxy in front of an LLM API that authenticates callers, enforces
//! usage policy and records every request.
//!
//! # Layout
//! The request path, in order, is [`stack`]; everything else serves it:
//! - [`server`]: listeners (HTTP/1.1 and h2), header timeouts, graceful shutdown.
//! - [`stack`]: the request path, top to bottom, one step per line.
//! - [`auth`]: key format and hashing; the in-memory directory of accounts and keys.
//! - [`llm`]: request understanding for the LLM routes (model, stream, parameters).
//! - [`upstream`]: the pooled upstream client, header rewriting, timeouts.
//! - [`accounting`]: the response tap: streams bodies through, reads usage and text.
//! - [`events`]: `RequestEvent`, the one record of each request.
//! - [`accounts`]: accounts and keys as a service (store + directory kept in step).
//! - [`store`]: durable records in SQLite or PostgreSQL (sqlx `Any`).
//! - [`admin`]: admin API, `/metrics`, `/healthz`, `/readyz`.
//! - [`config`]: TOML → validated configuration, every problem reported at once.
//! - [`error`]: the errors warden answers with, in the OpenAI shape.
//! - [`tokens`]: offline token counting.
//! - [`mock_llm`]: an OpenAI-compatible mock upstream for the demo, tests and benches.
//! - [`client`], [`cli`], [`demo`]: the command line.

pub mod accounting;
pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod detect;
pub mod error;
pub mod events;
pub mod limits;
pub mod llm;
pub mod mock_llm;
pub mod policy;
pub mod server;
pub mod stack;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod upstream;
