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
    /// Event endpoints: where clients hear about their files.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Erase personal data: every file bound to a candidate's webhooks (`--user-id`) and the
    /// data those webhooks carried, or one file (`--file`). Objects are deleted, rows become
    /// `erased` tombstones, `file.erased` events are recorded.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["user_id", "file"])))]
    Erase {
        /// The client id the files belong to (required with `--user-id`; with `--file`, if
        /// given, the file must be this client's).
        #[arg(long, required_unless_present = "file")]
        client: Option<String>,
        /// The candidate: the `user_id` of the webhooks.
        #[arg(long)]
        user_id: Option<String>,
        /// One file, by its carv_file_id.
        #[arg(long)]
        file: Option<uuid::Uuid>,
        /// Print JSON: {"erased": [ids]}.
        #[arg(long)]
        json: bool,
    },
    /// Scan promoted files again with clamd's current signatures (STOWAGE_CLAMD); a file found
    /// infected is quarantined: `file.infected` event, its content refused with 410. Exits 1 if
    /// any file could not be scanned.
    Rescan {
        /// Only files promoted since then: an RFC 3339 time, or a duration ago (`24h`, `7d`).
        #[arg(long, value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Print JSON: {"scanned", "clean", "infected": [{"carv_file_id", "client_id",
        /// "signature"}], "errors"}.
        #[arg(long)]
        json: bool,
    },
    /// Run one sweep pass now and print what it did.
    Sweep {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Extract a document's text: the document on stdin, its text on stdout (exit 0), or why
    /// it has none as JSON (exit 3). The service runs this for every document, as a child
    /// process that limits its own memory (`STOWAGE_TEXT_MEMORY_MB`) and CPU time.
    Extract {
        /// The document's type: pdf, doc, docx, txt, rtf or odt.
        #[arg(long, value_parser = parse_kind, required_unless_present = "serve")]
        kind: Option<crate::sniff::DocumentKind>,
        /// Read documents one after another, framed, until stdin closes (how the service runs
        /// its long-lived extraction processes) instead of one document.
        #[arg(long, conflicts_with = "kind")]
        serve: bool,
        /// CPU seconds the extraction may use before the system stops it.
        #[arg(long, default_value = "60")]
        cpu_seconds: u64,
        /// Seconds the extraction may take (the programs OCR runs are stopped past it).
        #[arg(long, default_value = "60")]
        seconds: f64,
        /// poppler's `pdftoppm`, for OCR (`--ocr`; default: found on `PATH`).
        #[arg(long)]
        ocr_pdftoppm: Option<std::path::PathBuf>,
        /// Tesseract, for OCR (`--ocr`; default: found on `PATH`).
        #[arg(long)]
        ocr_tesseract: Option<std::path::PathBuf>,
    },
    /// Files and bytes per state, what expires within 1 h / 24 h, the last sweep.
    Stats {
        /// Print JSON (the same document as GET /ops/storage).
        #[arg(long)]
        json: bool,
    },
}

/// `--since`: an RFC 3339 time, or a duration ago.
fn parse_since(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(raw)
        .map_err(|_| format!("'{raw}' is neither an RFC 3339 time nor a duration (24h, 7d)"))?;
    let ago = chrono::TimeDelta::from_std(ago).map_err(|e| e.to_string())?;
    Ok(chrono::Utc::now() - ago)
}

fn parse_kind(raw: &str) -> Result<crate::sniff::DocumentKind, String> {
    crate::sniff::DocumentKind::from_extension(raw.trim_start_matches('.'))
        .ok_or_else(|| format!("'{raw}' is not pdf, doc, docx, txt, rtf or odt"))
}

/// `stowage storage …`
#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Create both buckets (or directories) and the staging lifecycle rule.
    Init {
        /// Also let browsers on STOWAGE_CORS_ORIGINS reach the buckets directly (S3 bucket
        /// CORS: PUT to staging for direct uploads, GET from files for downloads); prints the
        /// rules applied.
        #[arg(long)]
        cors: bool,
    },
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
    /// List keys: name, created, revoked, last used, client ids (never a secret).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
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
    /// List client ids and the keys that may act for them.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Stop keys acting for a client id (its files and webhooks are kept).
    Remove {
        client_id: String,
        /// Only this key (default: every key).
        #[arg(long)]
        key: Option<String>,
    },
}

/// `stowage endpoints …`
#[derive(Subcommand, Debug)]
pub enum EndpointsCommand {
    /// Register an endpoint for a client and print its signing secret once.
    Add {
        client_id: String,
        /// `https://` URL (see --events-allow-private).
        url: String,
        /// Event types to deliver, comma separated (default: every type).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Print JSON: {"id", "client_id", "url", "events", "secret", "created_at"}.
        #[arg(long)]
        json: bool,
    },
    /// List endpoints (no secrets).
    List {
        /// Only this client's.
        #[arg(long)]
        client: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove an endpoint: nothing more is delivered to it.
    Remove { id: uuid::Uuid },
}

/// An endpoint as `stowage endpoints` prints it.
#[derive(Debug, serde::Serialize)]
struct EndpointListing {
    id: uuid::Uuid,
    client_id: String,
    url: String,
    events: Vec<crate::events::EventType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl EndpointListing {
    fn of(endpoint: repo::EndpointRecord, with_secret: bool) -> Self {
        EndpointListing {
            events: endpoint.delivered_types(),
            id: endpoint.id,
            client_id: endpoint.client_id,
            url: endpoint.url,
            secret: with_secret.then_some(endpoint.secret),
            created_at: endpoint.created_at,
        }
    }
}

async fn endpoints(config: &Config, command: EndpointsCommand) -> Result<(), CliError> {
    let repo = repo::connect(&config.database_url, config.database_max_connections).await?;
    match command {
        EndpointsCommand::Add {
            client_id,
            url,
            events,
            json,
        } => {
            let types = crate::events::parse_types(events.iter().map(String::as_str))
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            let endpoint = crate::delivery::register_endpoint(
                repo.as_ref(),
                &client_id,
                &url,
                types,
                &crate::policy::Policies::from_config(config).events,
            )
            .await
            .map_err(|e| CliError::Invalid(e.to_string()))?;
            let listing = EndpointListing::of(endpoint, true);
            if json {
                println!("{}", serde_json::to_string(&listing).expect("serializable"));
            } else {
                println!(
                    "endpoint {} for client '{}': {}",
                    listing.id, listing.client_id, listing.url
                );
                println!(
                    "signing secret: {}",
                    listing.secret.as_deref().unwrap_or_default()
                );
                println!("store this secret now; it is not shown again");
            }
        }
        EndpointsCommand::List { client, json } => {
            let endpoints: Vec<EndpointListing> = repo
                .list_endpoints(client.as_deref())
                .await?
                .into_iter()
                .map(|e| EndpointListing::of(e, false))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&endpoints).expect("serializable")
                );
            } else {
                let rows = endpoints.iter().map(|e| {
                    [
                        e.id.to_string(),
                        e.client_id.clone(),
                        e.url.clone(),
                        e.events
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        moment(Some(e.created_at)),
                    ]
                });
                print!(
                    "{}",
                    table(["ID", "CLIENT", "URL", "EVENTS", "CREATED"], rows)
                );
            }
        }
        EndpointsCommand::Remove { id } => {
            if !repo.remove_endpoint(None, id).await? {
                return Err(CliError::Invalid(format!("no endpoint {id}")));
            }
            println!("endpoint {id} removed; nothing more is delivered to it");
        }
    }
    Ok(())
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
    /// A value the command cannot use.
    #[error("{0}")]
    Invalid(String),
    /// A dependency `serve` needs kept failing until the start-up timeout.
    #[error("cannot start: the {dependency} ({setting}) is unusable: {cause}")]
    Dependency {
        dependency: &'static str,
        setting: &'static str,
        cause: String,
    },
    #[error("cannot start: cannot listen on {addr} (--listen / STOWAGE_LISTEN): {cause}")]
    Listen { addr: String, cause: std::io::Error },
    #[error(
        "cannot start: invalid sweep schedule '{schedule}' (--sweep-schedule / STOWAGE_SWEEP_SCHEDULE): \
         a cron line has six fields, seconds first, e.g. '0 * * * * *' for every minute"
    )]
    Schedule { schedule: String },
}

const DATABASE_SETTING: &str = "--database-url / STOWAGE_DATABASE_URL";
const STORAGE_SETTING: &str = "--storage / STOWAGE_STORAGE and the STOWAGE_S3_* settings";

/// Runs `attempt` until it succeeds, fails for good (`retryable` says no), or `deadline` passes;
/// the error is the last cause seen.
async fn retry_until<T, E: std::fmt::Display>(
    what: &str,
    deadline: tokio::time::Instant,
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, String> {
    // An attempt may run past the deadline by up to this much, so that even the first one (an
    // S3 call retries a refused connection with back-off for a few seconds) can say why it failed.
    const LAST_ATTEMPT: Duration = Duration::from_secs(10);
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left.max(LAST_ATTEMPT), attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if retryable(&e) && left > Duration::from_secs(1) => {
                tracing::warn!(error = %e, "{what} not reachable yet; retrying");
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(last.unwrap_or_else(|| "no answer before the start-up timeout".into()));
            }
        }
    }
}

/// Opens the database and the store and checks both storage areas, retrying what may come up
/// for `STOWAGE_STARTUP_TIMEOUT`; a failure names the dependency and the setting it came from.
async fn start_app(config: &Config) -> Result<crate::App, CliError> {
    let deadline = tokio::time::Instant::now() + config.startup_timeout;
    let repo = retry_until(
        "the database",
        deadline,
        |e: &repo::RepoError| matches!(e, repo::RepoError::Unavailable(_)),
        async || repo::connect(&config.database_url, config.database_max_connections).await,
    )
    .await
    .map_err(|cause| CliError::Dependency {
        dependency: "database",
        setting: DATABASE_SETTING,
        cause,
    })?;
    let storage_error = |cause| CliError::Dependency {
        dependency: "object storage",
        setting: STORAGE_SETTING,
        cause,
    };
    let app = crate::App::with_repo(repo, config)
        .await
        .map_err(|e| storage_error(e.to_string()))?;
    let store = app.store();
    let unavailable = |e: &store::StoreError| matches!(e, store::StoreError::Unavailable(_));
    let areas = async || {
        store.check(Area::Staging).await?;
        store.check(Area::Files).await
    };
    if let Err(first) = retry_until("object storage", deadline, unavailable, areas).await {
        // First run on an empty directory, or buckets not created yet: make them, look again.
        // If storage never answered, its first failure is the one worth reporting.
        let created = store.init(config.upload_ttl).await;
        if let Err(e) = &created {
            tracing::debug!(error = %e, "could not create the storage areas");
        }
        match created {
            Ok(()) => retry_until("object storage", deadline, unavailable, areas)
                .await
                .map_err(storage_error)?,
            Err(store::StoreError::Unavailable(_)) => return Err(storage_error(first)),
            Err(e) => return Err(storage_error(e.to_string())),
        }
    }
    Ok(app)
}

/// Parses the command line and the `STOWAGE_*` variables. A bad value that came from a
/// variable is reported by the variable's name (clap alone names only the flag), then the
/// process exits with status 2.
pub fn parse() -> Cli {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::{CommandFactory, FromArgMatches};

    let command = Cli::command();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let error = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => match Cli::from_arg_matches(&matches) {
            Ok(cli) => return cli,
            Err(e) => e,
        },
        Err(e) => e,
    };
    if matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) && let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg)
        && let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue)
    {
        let long = arg
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_start_matches("--");
        let on_command_line = args
            .iter()
            .any(|a| a.to_string_lossy().starts_with(&format!("--{long}")));
        let env = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned());
        if let (Some(env), false) = (env, on_command_line)
            && std::env::var_os(&env).is_some()
        {
            let reason = error
                .to_string()
                .lines()
                .next()
                .and_then(|l| l.split_once("': ").map(|(_, r)| r.to_owned()))
                .unwrap_or_default();
            eprintln!("stowage: invalid value '{value}' in {env} (--{long}): {reason}");
            std::process::exit(2);
        }
    }
    error.exit()
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    init_logging(cli.config.log_format);
    let config = cli.config;
    match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => {
            repo::connect(&config.database_url, config.database_max_connections).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Storage {
            command: StorageCommand::Init { cors },
        } => {
            let origins: Vec<String> = (config.cors_origins.iter())
                .filter(|o| !o.is_empty())
                .cloned()
                .collect();
            if cors && origins.is_empty() {
                return Err(CliError::Invalid(
                    "--cors applies STOWAGE_CORS_ORIGINS to the buckets: set it first".into(),
                ));
            }
            let spill = crate::spill::Spill::new(std::env::temp_dir(), 0);
            let store = store::connect(&config, &spill).await?;
            store.init(config.upload_ttl).await?;
            if cors {
                store.allow_browsers(&origins).await?;
                for area in [Area::Staging, Area::Files] {
                    println!("{:?} CORS: {}", area, area.browser_rule_json(&origins));
                }
            }
            println!("storage ready: {}", store.describe());
            Ok(())
        }
        Command::Keys { command } => {
            let repo = repo::connect(&config.database_url, config.database_max_connections).await?;
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
                KeysCommand::List { json } => {
                    let keys = accounts::list_keys(repo.as_ref()).await?;
                    if json {
                        println!("{}", serde_json::to_string(&keys).expect("serializable"));
                    } else {
                        let rows = keys.iter().map(|k| {
                            [
                                k.name.clone(),
                                moment(Some(k.created_at)),
                                moment(k.revoked_at),
                                moment(k.last_used_at),
                                k.client_ids.join(","),
                            ]
                        });
                        print!(
                            "{}",
                            table(["NAME", "CREATED", "REVOKED", "LAST USED", "CLIENTS"], rows)
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Erase {
            client,
            user_id,
            file,
            json,
        } => {
            let state = crate::connect(&config).await?;
            let erased = match (user_id, file) {
                (Some(user_id), _) => {
                    let client = client.expect("clap requires --client with --user-id");
                    if !crate::accounts::client_known(state.repo(), &client).await? {
                        return Err(CliError::Invalid(format!(
                            "unknown client {client}: no API key acts for it and it has no files"
                        )));
                    }
                    crate::erasure::erase_user(&state, &client, &user_id).await?
                }
                (None, Some(id)) => {
                    let owner = state.repo().file_client(id).await?;
                    let client = match (owner, client) {
                        (Some(owner), Some(client)) if owner != client => None,
                        (owner, _) => owner,
                    };
                    let Some(client) = client else {
                        return Err(CliError::Invalid(format!("no file {id}")));
                    };
                    match crate::erasure::erase_file(&state, &client, id).await? {
                        crate::repo::Erase::NotFound => {
                            return Err(CliError::Invalid(format!("no file {id}")));
                        }
                        _ => vec![id],
                    }
                }
                (None, None) => unreachable!("clap requires --user-id or --file"),
            };
            if json {
                println!("{}", serde_json::json!({ "erased": erased }));
            } else {
                println!("erased {} file(s)", erased.len());
                for id in &erased {
                    println!("{id}");
                }
            }
            Ok(())
        }
        Command::Rescan { since, json } => {
            let state = crate::connect(&config).await?;
            let report = crate::rescan::rescan(&state, since)
                .await
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            if json {
                println!("{}", serde_json::to_string(&report).expect("serializable"));
            } else {
                println!(
                    "rescanned {} file(s): {} clean, {} infected, {} not scanned",
                    report.scanned,
                    report.clean,
                    report.infected.len(),
                    report.errors
                );
                for found in &report.infected {
                    println!(
                        "quarantined {} ({}): {}",
                        found.carv_file_id, found.client_id, found.signature
                    );
                }
            }
            if report.errors > 0 {
                return Err(CliError::Invalid(format!(
                    "{} file(s) could not be scanned (see the log); run again",
                    report.errors
                )));
            }
            Ok(())
        }
        Command::Sweep { json } => {
            let state = crate::connect(&config).await?;
            let run = crate::sweeper::run_pass(&state).await;
            if json {
                println!("{}", serde_json::to_string(&run).expect("serializable"));
            } else {
                println!("sweep: {}", crate::report::sweep_summary(&run));
                if let Some(error) = &run.last_error {
                    println!("last error: {error}");
                }
            }
            Ok(())
        }
        Command::Stats { json } => {
            let repo = repo::connect(&config.database_url, config.database_max_connections).await?;
            let report = crate::report::StorageReport::load(repo.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string(&report).expect("serializable"));
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Command::Clients { command } => clients(&config, command).await,
        Command::Endpoints { command } => endpoints(&config, command).await,
        // Run by `main` before any runtime starts (see `run_without_runtime`).
        Command::Extract { .. } => Err(CliError::Invalid(
            "`stowage extract` runs before any runtime starts: see `run_without_runtime`".into(),
        )),
    }
}

/// The commands that run without an async runtime: `extract`, which limits its own address
/// space first, and is better off without a runtime's threads and their reservations.
pub fn run_without_runtime(cli: &Cli) -> Option<std::process::ExitCode> {
    match cli.command {
        Command::Extract {
            kind,
            serve,
            cpu_seconds,
            seconds,
            ref ocr_pdftoppm,
            ref ocr_tesseract,
        } => {
            let ocr = cli.config.ocr.then(|| {
                let mut ocr = crate::ocr::Ocr::locate(&cli.config.ocr_languages);
                if let Some(path) = ocr_pdftoppm {
                    ocr.pdftoppm.clone_from(path);
                }
                if let Some(path) = ocr_tesseract {
                    ocr.tesseract.clone_from(path);
                }
                ocr
            });
            let memory_mb = cli.config.text_memory_mb;
            Some(match kind {
                Some(kind) if !serve => {
                    crate::extraction::child_main(kind, memory_mb, cpu_seconds, seconds, ocr)
                }
                _ => crate::extraction::child_serve(memory_mb, cpu_seconds, seconds, ocr),
            })
        }
        _ => None,
    }
}

async fn clients(config: &Config, command: ClientsCommand) -> Result<(), CliError> {
    let repo = repo::connect(&config.database_url, config.database_max_connections).await?;
    match command {
        ClientsCommand::List { json } => {
            let clients = accounts::list_clients(repo.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string(&clients).expect("serializable"));
            } else {
                let rows = clients.iter().map(|c| {
                    [
                        c.client_id.clone(),
                        c.workspace.clone(),
                        if c.key_revoked {
                            format!("{} (revoked)", c.key)
                        } else {
                            c.key.clone()
                        },
                        moment(Some(c.created_at)),
                    ]
                });
                print!(
                    "{}",
                    table(["CLIENT ID", "WORKSPACE", "KEY", "ADDED"], rows)
                );
            }
            Ok(())
        }
        ClientsCommand::Remove { client_id, key } => {
            let removed =
                accounts::remove_client(repo.as_ref(), &client_id, key.as_deref()).await?;
            println!("client '{client_id}' removed from {removed} key(s); its files are kept");
            Ok(())
        }
        ClientsCommand::Add {
            client_id,
            key,
            workspace,
            json,
        } => {
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

/// A time for a listing: to the second, UTC; `-` for none.
fn moment(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Left-aligned columns separated by two spaces, a header line first.
fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    let rows: Vec<[String; N]> = std::iter::once(header.map(str::to_owned))
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The log filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,aws_config=warn,tokio_cron_scheduler=warn";

/// Logs go to stderr as text (coloured only on a terminal), or to stdout as JSON lines — and
/// then nothing else is written to stdout.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        // One flat shape for every line (docs/operations.md, "Logs"): timestamp, level,
        // target, message and the event's fields at the top level, and `span` (the request's
        // method, path and id) on lines written while a request is handled.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .with_writer(std::io::stdout)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
    };
}

/// Tells the operator something once, on stdout: as text, or in JSON mode as one JSON line
/// (`{"message", …fields}`) like the log's.
fn announce(format: LogFormat, text: &str, message: &str, fields: &[(&str, String)]) {
    use std::io::Write;
    // A closed stdout (a supervisor that stopped reading) must not stop the service.
    let line = match format {
        LogFormat::Pretty => text.to_owned(),
        LogFormat::Json => {
            // The shape of every other log line (`init_logging`).
            let mut line = serde_json::Map::new();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            line.insert("timestamp".into(), now.into());
            line.insert("level".into(), "INFO".into());
            line.insert("target".into(), "stowage::cli".into());
            line.insert("message".into(), message.into());
            for (name, value) in fields {
                line.insert((*name).into(), value.clone().into());
            }
            serde_json::Value::Object(line).to_string()
        }
    };
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Where JSON mode puts the first-run key: beside the SQLite database, or in the working
/// directory for PostgreSQL.
fn first_run_key_file(config: &Config) -> std::path::PathBuf {
    const NAME: &str = "stowage-first-run-key";
    let sqlite_dir = config
        .database_url
        .strip_prefix("sqlite://")
        .or_else(|| config.database_url.strip_prefix("sqlite:"))
        .map(|path| path.split('?').next().unwrap_or(path))
        .filter(|path| *path != ":memory:")
        .and_then(|path| std::path::Path::new(path).parent().map(|d| d.to_path_buf()));
    match sqlite_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(NAME),
        _ => std::path::PathBuf::from(NAME),
    }
}

/// Writes a secret to a file readable and writable by its owner only (`0600`).
fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode when opened: make sure.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()
}

async fn serve(config: &Config) -> Result<(), CliError> {
    if config.ocr {
        crate::ocr::Ocr::locate(&config.ocr_languages)
            .check()
            .map_err(CliError::Invalid)?;
    }
    let state = start_app(config).await?;
    let scheduler = crate::sweeper::start(state.clone(), &config.sweep_schedule)
        .await
        .map_err(|e| match e {
            crate::sweeper::SchedulerError::Schedule { .. } => CliError::Schedule {
                schedule: config.sweep_schedule.clone(),
            },
            other => CliError::Scheduler(other),
        })?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|cause| CliError::Listen {
            addr: config.listen.clone(),
            cause,
        })?;
    let addr = listener.local_addr()?;
    announce(
        config.log_format,
        &format!("stowage listening on http://{addr}"),
        "stowage listening",
        &[("url", format!("http://{addr}"))],
    );
    tracing::info!(%addr, storage = %state.store().describe(), "listening");
    // Listening: a first-run key printed now cannot be lost to a start that fails after it.
    if let Some(added) = accounts::bootstrap(state.repo()).await? {
        let api_key = added.api_key.unwrap_or_default();
        match config.log_format {
            LogFormat::Pretty => announce(
                config.log_format,
                &format!(
                    "first run: created client '{}' with API key '{}': {api_key}\n\
                     store this secret now; it is not shown again",
                    added.client_id, added.key
                ),
                "",
                &[],
            ),
            // A log pipeline must never carry a secret: it goes to a file only its owner reads.
            LogFormat::Json => {
                let path = first_run_key_file(config);
                let written = write_secret_file(&path, &format!("{api_key}\n"));
                let (message, fields) = match &written {
                    Ok(()) => (
                        "first run: created a client and its API key; the secret is in key_file (readable by this user only): store it, then delete the file",
                        vec![
                            ("client_id", added.client_id.clone()),
                            ("key", added.key.clone()),
                            ("key_file", path.display().to_string()),
                        ],
                    ),
                    Err(e) => (
                        "first run: created a client and its API key, but its secret could not be written to key_file: revoke the key and create another",
                        vec![
                            ("client_id", added.client_id.clone()),
                            ("key", added.key.clone()),
                            ("key_file", path.display().to_string()),
                            ("error", e.to_string()),
                        ],
                    ),
                };
                announce(config.log_format, "", message, &fields);
            }
        }
    }
    // Promotions interrupted by a previous stop are re-driven now, then on every scheduled pass.
    scheduler.run_now(state.clone());

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
