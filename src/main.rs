//! The `warden` command line. Everything it does lives in the library; this file only
//! parses arguments and reports errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use warden::cli::{AccountsCommand, AlertsCommand, KeysCommand};
use warden::client::AdminClient;
use warden::config::Config;

/// mimalloc instead of glibc malloc: requests are allocated on one tokio worker and often
/// freed on another (or on the audit and detector threads), and glibc's arena locks then
/// showed up in perf profiles as 4% of warden's time under load. Built with `no_thp`:
/// mimalloc 3 otherwise backs its arenas with transparent huge pages, and RSS then grew
/// in 2 MiB steps under sustained load (80 MiB of huge pages after one minute).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "warden", version, about = "A reverse proxy for LLM APIs that enforces usage policy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Admin API of a running warden.
    #[arg(long, env = "WARDEN_ADMIN_URL", default_value = "http://127.0.0.1:8081", global = true)]
    admin_url: String,
    /// Admin bearer token.
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and its admin listener.
    Serve {
        #[arg(long, short, default_value = "config/warden.toml")]
        config: PathBuf,
    },
    /// Validate a config file; print every problem; exit 1 if there is any.
    CheckConfig {
        #[arg(long, short, default_value = "config/warden.toml")]
        config: PathBuf,
    },
    /// Run everything embedded on loopback with simulated traffic, and print what happens.
    Demo {
        /// Keep the demo running after the traffic, until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
    },
    /// Manage accounts through the admin API.
    Accounts {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: AccountsCmd,
    },
    /// Manage API keys through the admin API.
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// Work the detector's alert queue through the admin API.
    Alerts {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: AlertsCmd,
    },
    /// Run the detector over audit JSONL files (in the order given), on the records' own
    /// timestamps; print each alert created or changed as a JSON line on stdout.
    Backtest {
        /// Only the `[detection]` section is used (other sections need not be valid here).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also write every linked pair of accounts at the end, with its link kinds, as
        /// JSON lines (to measure each link kind's false-link rate on labelled traffic).
        #[arg(long)]
        links: Option<PathBuf>,
        /// Also write every account's standing at the end (score, every signal, where it
        /// stands among the active accounts) as JSON lines.
        #[arg(long)]
        accounts: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AlertsCmd {
    /// List alerts (open by default).
    List {
        /// open, resolved or all.
        #[arg(long)]
        status: Option<String>,
        /// Only alerts naming this account.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one alert: evidence, sample requests, member accounts, actions taken.
    Show { id: String },
    /// Close an alert as `confirmed` or `false_positive` (restores the accounts and
    /// suppresses the same alert for a while).
    Resolve {
        id: String,
        #[arg(long, value_parser = ["confirmed", "false_positive"])]
        verdict: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountsCmd {
    /// Create an account.
    Create {
        id: String,
        #[arg(long)]
        tier: Option<String>,
    },
    /// List accounts.
    List,
    /// Show one account with its recent reviewer actions.
    Show { id: String },
    /// Block an account: its requests get 403 from the next one on.
    Block {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unblock an account.
    Unblock {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key for an account; the key is printed once.
    Create {
        account: String,
        /// Print only the key (no JSON), e.g. `KEY=$(warden keys create acme --key-only)`.
        #[arg(long)]
        key_only: bool,
    },
    /// List an account's keys (ids and hints, never the keys).
    List { account: String },
    /// Revoke a key.
    Revoke { key_id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn admin_client(args: &AdminArgs) -> anyhow::Result<AdminClient> {
    let token = args
        .admin_token
        .clone()
        .ok_or_else(|| anyhow::anyhow!("set WARDEN_ADMIN_TOKEN (or --admin-token) to the admin token"))?;
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    Ok(AdminClient::new(&args.admin_url, &token, &actor))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(&config).await,
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok (proxy {}, admin {}, upstream {}, {} tier(s))",
                    config.display(),
                    c.server.listen,
                    c.server.admin_listen,
                    c.upstream.base_url,
                    c.tiers.len()
                );
                for note in warden::tiers::notes(&c.tiers) {
                    println!("note: {note}");
                }
                for (what, path) in data_paths(&c) {
                    println!("{what}: {path}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                eprintln!("{}: {} problem(s)\n{problems}", config.display(), problems.0.len());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Demo { keep_running } => {
            warden::demo::run(warden::demo::DemoOptions { keep_running }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts { admin, command } => {
            let client = admin_client(&admin)?;
            let cmd = match command {
                AccountsCmd::Create { id, tier } => AccountsCommand::Create { id, tier },
                AccountsCmd::List => AccountsCommand::List,
                AccountsCmd::Show { id } => AccountsCommand::Show { id },
                AccountsCmd::Block { id, reason } => AccountsCommand::Block { id, reason },
                AccountsCmd::Unblock { id, reason } => AccountsCommand::Unblock { id, reason },
            };
            warden::cli::accounts(&client, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts { admin, command } => {
            let client = admin_client(&admin)?;
            let cmd = match command {
                AlertsCmd::List { status, account, limit } => AlertsCommand::List { status, account, limit },
                AlertsCmd::Show { id } => AlertsCommand::Show { id },
                AlertsCmd::Resolve { id, verdict, note } => AlertsCommand::Resolve { id, verdict, note },
            };
            warden::cli::alerts(&client, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backtest { config, links, accounts, files } => {
            backtest(config.as_deref(), links.as_deref(), accounts.as_deref(), &files)
        }
        Command::Keys { admin, command } => {
            let client = admin_client(&admin)?;
            let cmd = match command {
                KeysCmd::Create { account, key_only } => KeysCommand::Create { account, key_only },
                KeysCmd::List { account } => KeysCommand::List { account },
                KeysCmd::Revoke { key_id } => KeysCommand::Revoke { key_id },
            };
            warden::cli::keys(&client, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{}: {} problem(s)\n{problems}", path.display(), problems.0.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let _log = warden::telemetry::init(&config.logging);
    let listeners = warden::server::Listeners::bind(config.server.listen, config.server.admin_listen).await?;
    let (proxy, admin) = (listeners.proxy_addr(), listeners.admin_addr());
    let app = Arc::new(warden::app::App::build_from(config, Some(path.to_path_buf())).await?);
    tracing::info!(%proxy, %admin, upstream = %app.config().upstream.base_url, "warden listening");
    for (what, path) in data_paths(&app.config()) {
        tracing::info!(path = %path, "{what}");
    }
    for note in warden::tiers::notes(&app.config().tiers) {
        tracing::warn!("{note}");
    }
    tokio::spawn(reload_on_sighup(app.clone()));
    warden::server::run(app.clone(), listeners, shutdown_signal()).await;
    app.shutdown().await;
    tracing::info!("warden stopped");
    Ok(ExitCode::SUCCESS)
}

/// Where warden keeps its data, as absolute paths (a relative path in the config is
/// relative to the directory warden was started in, which is easy to miss).
fn data_paths(c: &Config) -> Vec<(&'static str, String)> {
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let storage = match &c.storage.backend {
        warden::store::StorageBackend::Sqlite(p) => abs(p),
        warden::store::StorageBackend::Url(u) => warden::settings::redacted_url(u),
    };
    vec![("accounts, keys and alerts (storage)", storage), ("audit log (audit.dir)", abs(&c.audit.dir))]
}

/// SIGHUP: read the config file again and apply what can change without a restart.
async fn reload_on_sighup(app: Arc<warden::app::App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        match app.reload() {
            Ok(r) => {
                tracing::info!(applied = ?r.applied, restart_required = ?r.restart_required, "SIGHUP: configuration reloaded")
            }
            Err(problems) => {
                tracing::error!(problems = %problems, "SIGHUP: configuration not reloaded; the running one stays")
            }
        }
    }
}

fn backtest(
    config: Option<&std::path::Path>,
    links: Option<&std::path::Path>,
    accounts: Option<&std::path::Path>,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let cfg = match config {
        Some(path) => match warden::detect::config::load_section(path) {
            Ok(c) => c,
            Err(problems) => {
                eprintln!("{}: invalid [detection] section:\n{problems}", path.display());
                return Ok(ExitCode::from(1));
            }
        },
        None => warden::detect::config::DetectConfig::default(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let create = |p: &std::path::Path| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
        ))
    };
    let mut links_out = links.map(create).transpose()?;
    let mut accounts_out = accounts.map(create).transpose()?;
    let reports = warden::detect::backtest::Reports {
        links: links_out.as_mut().map(|w| w as &mut dyn std::io::Write),
        accounts: accounts_out.as_mut().map(|w| w as &mut dyn std::io::Write),
    };
    let s = warden::detect::backtest::run_with(cfg, files, &mut out, reports)?;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "backtest: {} records ({} skipped) in {:.2}s = {:.0} records/s; {} alerts, {} updates, {} accounts flagged",
        s.records,
        s.skipped,
        secs,
        s.records as f64 / secs,
        s.alerts_created,
        s.alert_updates,
        s.accounts_flagged
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
