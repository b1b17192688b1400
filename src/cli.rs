//! The command line: `serve`, `migrate`, `storage init`, `keys`, `clients`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::sync::watch;

use crate::accounts::{self, AccountError};
use crate::config::{Config, LogFormat};
use crate::repo;
use crate::store::{self, Area};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Two-phase staged file uploads on object storage.
#[derive(Parser, Debug)]
#[command(name = "stowage", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service (runs migrations first).
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Object storage administration.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Client ids (workspaces) and the keys that may act for them.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Run one sweep pass now and print what it did.
    Sweep {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Files and bytes per state, what expires within 1 h / 24 h, the last sweep.
    Stats {
        /// Print JSON (the same document as GET /ops/storage).
        #[arg(long)]
        json: bool,
    },
}

/// `stowage storage …`
#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Create both buckets (or directories) and the staging lifecycle rule.
    Init,
}

/// `stowage keys …`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key and print its secret once.
    Create {
        name: String,
        /// Print JSON: {"key": …, "api_key": …}.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key.
    Revoke { name: String },
}

/// `stowage clients …`
#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Map a client id to a workspace for a key (creating the key if needed).
    Add {
        client_id: String,
        /// Name of the key that may act for this client id.
        #[arg(long)]
        key: String,
        /// Workspace name (defaults to the client id).
        #[arg(long)]
        workspace: Option<String>,
        /// Print JSON: {"client_id", "workspace", "key", "api_key" (only if created)}.
        #[arg(long)]
        json: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] crate::StartError),
    #[error(transparent)]
    Repo(#[from] repo::RepoError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Scheduler(#[from] crate::sweeper::SchedulerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    init_logging(cli.config.log_format);
    let config = cli.config;
    match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => {
            repo::connect(&config.database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Storage {
            command: StorageCommand::Init,
        } => {
            let spill = crate::spill::Spill::new(std::env::temp_dir(), 0);
            let store = store::connect(&config, &spill).await?;
            store.init(config.upload_ttl).await?;
            println!("storage ready: {}", store.describe());
            Ok(())
        }
        Command::Keys { command } => {
            let repo = repo::connect(&config.database_url).await?;
            match command {
                KeysCommand::Create { name, json } => {
                    let created = accounts::create_key(repo.as_ref(), &name).await?;
                    if json {
                        println!("{}", serde_json::to_string(&created).expect("serializable"));
                    } else {
                        println!("created key '{}': {}", created.key, created.api_key);
                        println!("store this secret now; it is not shown again");
                    }
                }
                KeysCommand::Revoke { name } => {
                    accounts::revoke_key(repo.as_ref(), &name).await?;
                    println!("revoked key '{name}'");
                }
            }
            Ok(())
        }
        Command::Sweep { json } => {
            let state = crate::connect(&config).await?;
            let run = crate::sweeper::run_pass(&state).await;
            if json {
                println!("{}", serde_json::to_string(&run).expect("serializable"));
            } else {
                println!(
                    "sweep: {} expired ({} objects deleted), {} dead uploads aborted, {} orphans \
                     deleted, {} tombstones purged, {} bound files promoted, {} errors",
                    run.expired,
                    run.objects_deleted,
                    run.receiving_aborted,
                    run.orphans_deleted,
                    run.tombstones_purged,
                    run.promoted,
                    run.errors
                );
                if let Some(error) = &run.last_error {
                    println!("last error: {error}");
                }
            }
            Ok(())
        }
        Command::Stats { json } => {
            let repo = repo::connect(&config.database_url).await?;
            let report = crate::report::StorageReport::load(repo.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string(&report).expect("serializable"));
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Command::Clients {
            command:
                ClientsCommand::Add {
                    client_id,
                    key,
                    workspace,
                    json,
                },
        } => {
            let repo = repo::connect(&config.database_url).await?;
            let added =
                accounts::add_client(repo.as_ref(), &client_id, &key, workspace.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string(&added).expect("serializable"));
            } else {
                println!(
                    "client '{}' (workspace '{}') may now be used with key '{}'",
                    added.client_id, added.workspace, added.key
                );
                if let Some(secret) = &added.api_key {
                    println!("created key '{}': {secret}", added.key);
                    println!("store this secret now; it is not shown again");
                }
            }
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,aws_config=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn serve(config: &Config) -> Result<(), CliError> {
    let state = crate::connect(config).await?;
    let store = state.store();
    if store.check(Area::Staging).await.is_err() || store.check(Area::Files).await.is_err() {
        // First run on an empty directory, or buckets not created yet: make them.
        if let Err(e) = store.init(config.upload_ttl).await {
            tracing::warn!(error = %e, "storage areas are missing and could not be created; run `stowage storage init`");
        }
    }
    if let Some(added) = accounts::bootstrap(state.repo()).await? {
        println!(
            "first run: created client '{}' with API key '{}': {}",
            added.client_id,
            added.key,
            added.api_key.as_deref().unwrap_or("")
        );
        println!("store this secret now; it is not shown again");
    }

    // Promotions interrupted by a previous stop are re-driven now, then on every scheduled pass.
    let scheduler = crate::sweeper::start(state.clone(), &config.sweep_schedule).await?;
    scheduler.run_now(state.clone());

    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    println!("stowage listening on http://{addr}");
    tracing::info!(%addr, storage = %store.describe(), "listening");

    let (stop, mut stopped) = watch::channel(false);
    let server = crate::serve(listener, state.clone(), async move {
        let _ = stopped.changed().await;
    });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = shutdown_signal() => {
            tracing::info!(deadline = ?DRAIN_DEADLINE, "shutting down, draining in-flight requests");
            let _ = stop.send(true);
            match tokio::time::timeout(DRAIN_DEADLINE, server).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!("drain deadline passed; stopping with requests in flight"),
            }
        }
    }
    scheduler.stop(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
