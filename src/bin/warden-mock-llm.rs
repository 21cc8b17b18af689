//! `warden-mock-llm`: the mock OpenAI-compatible upstream as a process of its own, for
//! local runs, scripts and benchmarks. Prints `listening on http://ADDR` once bound.

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use warden::mock_llm::{self, MockOptions};

#[derive(Parser)]
#[command(name = "warden-mock-llm", about = "An OpenAI-compatible mock LLM upstream")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Delay before response headers, ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks per streamed response (= completion tokens).
    #[arg(long, default_value_t = 16)]
    chunks: usize,
    /// Pause between streamed chunks, ms.
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let opts = MockOptions {
        latency: Duration::from_millis(args.latency_ms),
        chunks: args.chunks,
        chunk_interval: Duration::from_millis(args.chunk_interval_ms),
    };
    mock_llm::run(listener, opts, async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
    .await?;
    Ok(())
}
