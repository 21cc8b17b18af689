//! `warden-mock-llm`: the mock OpenAI- and Anthropic-compatible upstream
//! ([`warden::mock_llm`]) as a process of its own, for local runs, scripts and benchmarks.
//!
//! Once bound it prints exactly one line, `listening on http://ADDR`, so a script that
//! asked for port 0 can read the port. SIGINT or SIGTERM stops it gracefully.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use warden::mock_llm::{self, MockOptions};

#[derive(Parser)]
#[command(name = "warden-mock-llm", about = "An OpenAI- and Anthropic-compatible mock LLM upstream")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Delay before the response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks per response (= completion tokens unless max_tokens is lower).
    #[arg(long, default_value_t = 16)]
    chunks: usize,
    /// Pause between two streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Handlers first: a script may signal as soon as it has read the address line.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    let opts = MockOptions {
        latency: Duration::from_millis(args.latency_ms),
        chunks: args.chunks,
        chunk_interval: Duration::from_millis(args.chunk_interval_ms),
    };
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    mock_llm::run(listener, opts, shutdown).await?;
    Ok(())
}
