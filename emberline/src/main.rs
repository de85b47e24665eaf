//! The `emberline` command: every role of the platform in one binary.
//!
//! * `emberline up` — everything in one process on the embedded default, with a simulated
//!   grill, so a new user sees live data at once.
//! * `emberline ingest | process | gateway` — one role each, configured by a TOML file
//!   (for the distributed deployment on Kafka).
//! * `emberline registry` — the embedded schema registry's Confluent-compatible REST API.
//! * `emberline connect-ha` — the Home Assistant connector (MQTT discovery) for a gateway.
//! * `emberline notify` — deliver alerts to webhooks, e-mail and ntfy through an outbox.
//! * `emberline eval-predictions` — score time-to-target predictions on cook logs.
//! * `emberline watch` — print live trend updates from a gateway.
//! * `emberline status` — disk use of a data directory per topic and projection table
//!   (works while `up` runs on it).
//! * `emberline config --print-default` — the whole configuration with its defaults.
//! * `emberline backup <file>` / `emberline restore <file>` — one file holding the data
//!   directory's stores, taken while `up` runs; put back into an empty directory.
//! * `emberline sql "<query>"` / `emberline export --device D` — SQL over the log's topics
//!   as tables, and a device's readings to Parquet or CSV.

mod accounts;
mod allocator;
mod analytics;
mod backup;
mod config;
#[cfg(test)]
mod doc_examples;
mod eval;
mod ops;
mod processing;
mod progress;
mod rebuild;
mod report;
mod roles;
mod sql_engine;
mod sql_prompt;
mod status;
mod telemetry;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// Emberline: grill and smoker monitoring on an event log.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Environment variables `EMBERLINE__SECTION__KEY` override it.
    #[arg(long, short, global = true, env = "EMBERLINE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the embedded log and projections.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// How log lines are written on standard error.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "EMBERLINE_LOG_FORMAT"
    )]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every role in one process (embedded log unless the config says otherwise).
    Up {
        /// gRPC / grpc-web address.
        #[arg(long)]
        grpc_addr: Option<SocketAddr>,
        /// Address of the schema registry REST API.
        #[arg(long)]
        registry_addr: Option<SocketAddr>,
        /// Address of the web UI.
        #[arg(long)]
        web_addr: Option<SocketAddr>,
        /// With no user yet, create the owner `admin` (or `auth.admin_user`) with the
        /// password in this file instead of printing a one-time setup link.
        #[arg(long)]
        admin_password_file: Option<PathBuf>,
    },
    /// Run the ingest role: configured sources append to the log.
    Ingest,
    /// Run the processor role: trends, device projections, cook phases, predictions, alerts.
    Process {
        /// Process the log as it is now, then exit (rebuilds, replays).
        #[arg(long)]
        catch_up: bool,
    },
    /// Run the gateway role: the gRPC API.
    Gateway {
        /// gRPC / grpc-web address.
        #[arg(long)]
        grpc_addr: Option<SocketAddr>,
        /// Address of the web UI.
        #[arg(long)]
        web_addr: Option<SocketAddr>,
    },
    /// Serve the embedded schema registry's Confluent-compatible REST API.
    Registry {
        /// Address to listen on.
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Bridge a gateway to Home Assistant through an MQTT broker (MQTT discovery).
    ConnectHa {
        /// Gateway URL (default: home_assistant.gateway_url).
        #[arg(long)]
        gateway: Option<String>,
        /// MQTT broker, mqtt://host:port or mqtts://host:port (default: home_assistant.mqtt.url).
        #[arg(long)]
        mqtt_url: Option<String>,
    },
    /// Deliver alerts to the configured notification channels (webhook, e-mail, ntfy).
    Notify,
    /// Print live trend updates from a gateway (resumes after disconnects).
    Watch {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Start from the oldest update in the log instead of new ones.
        #[arg(long)]
        from_start: bool,
        /// An API token (scope read or more); `emberline token create` makes one.
        #[arg(long, env = "EMBERLINE_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Manage users (passwords, roles) of this data directory; works while `up` runs.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Manage API tokens for scripts and connectors; works while `up` runs.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Score time-to-target predictions on cook logs (heat-ledger or Combustion CSV) and on
    /// simulated cooks; prints a Markdown table.
    EvalPredictions {
        /// Cook log files.
        files: Vec<PathBuf>,
        /// Simulated cooks to add (seeds 1..=N).
        #[arg(long, default_value_t = 8)]
        simulated: u32,
        /// Target of the simulated cooks, Celsius.
        #[arg(long, default_value_t = 93.0)]
        target_c: f64,
        /// Add the learning evaluation: each device's cooks in time order, each predicted
        /// with what the earlier ones taught only, beside no learning (simulated smokers,
        /// and recorded files named `<device>_<cook>[_pN].csv`).
        #[arg(long)]
        learning: bool,
    },
    /// Write a consistent backup of the data directory's stores (log and registry,
    /// projections, notification outbox) to one file. When a process holds the directory,
    /// it takes the backup, asked over its operations endpoint (`ops.addr`).
    Backup {
        /// The backup file to write.
        file: PathBuf,
        /// Operations endpoint of the process holding the data directory (default: ops.addr).
        #[arg(long)]
        ops_addr: Option<SocketAddr>,
    },
    /// Restore a backup into the data directory, which must be empty.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Replace the stores of a non-empty data directory (no process may hold it).
        #[arg(long)]
        force: bool,
    },
    /// Drop the projections and replay them from the log, with a progress line; an
    /// interrupted rebuild resumes when run again. No other process may use the data
    /// directory meanwhile.
    Rebuild {
        /// Rebuild even though log retention removed records the projections still hold
        /// (history older than the log is lost).
        #[arg(long)]
        discard_older_history: bool,
    },
    /// Run a SQL query over the log: every topic is a table (probe_readings, device_events,
    /// cook_commands, trends, predictions, alerts, dead_letter), plus the view cooks. On the
    /// embedded log, not while another process holds the data directory.
    Sql(analytics::SqlArgs),
    /// Export one device's readings, in log order, to Parquet or CSV (streaming).
    Export(analytics::ExportArgs),
    /// Print what the data directory holds: per topic records, bytes and oldest/newest
    /// times, per projection table entries and stored bytes, and file sizes. Reads the files
    /// read-only, so it works while `emberline up` runs on the directory.
    Status,
    /// Show configuration.
    Config {
        /// Print the built-in defaults as TOML.
        #[arg(long)]
        print_default: bool,
    },
}

impl Command {
    /// The role this command runs, as span exports name the service.
    fn role(&self) -> &'static str {
        match self {
            Command::Up { .. } => "up",
            Command::Ingest => "ingest",
            Command::Process { .. } => "process",
            Command::Gateway { .. } => "gateway",
            Command::Registry { .. } => "registry",
            Command::ConnectHa { .. } => "connect-ha",
            Command::Notify => "notify",
            Command::Watch { .. } => "watch",
            Command::User(_) => "user",
            Command::Token(_) => "token",
            Command::EvalPredictions { .. } => "eval-predictions",
            Command::Config { .. } => "config",
            Command::Status => "status",
            Command::Rebuild { .. } => "rebuild",
            Command::Backup { .. } => "backup",
            Command::Restore { .. } => "restore",
            Command::Sql(_) => "sql",
            Command::Export(_) => "export",
        }
    }
}

/// Runs the command; a failure prints its chain of causes on one line (`error: …: …`) and
/// exits with status 1 — a configuration mistake is not a crash, so no backtrace.
/// Threads of the runtime's blocking pool, which runs every store transaction and log read.
/// Tokio's default of 512 let each append wake a burst of partition readers into a thread
/// apiece: a 50-grill soak kept 126 threads alive, each holding its own allocator cache,
/// and the heap those caches held kept creeping up for as long as it ran. Reads queue
/// behind 32 threads instead; on a small machine more would only wait for a core. The one
/// long-lived blocking task (the trend dataflow) takes one of them.
const BLOCKING_THREADS: usize = 32;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{}", report::render(&e));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    emberline_common::http::install_crypto_provider();
    let logs = telemetry::logs_only(cli.log_format);
    if let Command::EvalPredictions {
        files,
        simulated,
        target_c,
        learning,
    } = &cli.command
    {
        let table = tracing::dispatcher::with_default(&logs, || {
            eval::run(files, *simulated, *target_c, *learning)
        })?;
        #[allow(clippy::print_stdout)]
        {
            print!("{table}");
        }
        return Ok(());
    }
    if let Command::Status = &cli.command {
        let mut config =
            tracing::dispatcher::with_default(&logs, || Config::load(cli.config.as_deref()))?;
        if let Some(dir) = &cli.data_dir {
            config.data_dir = Some(dir.clone());
        }
        let text = status::report(&config.data_dir()?)?;
        #[allow(clippy::print_stdout)]
        {
            print!("{text}");
        }
        return Ok(());
    }
    if let Command::Config { print_default } = &cli.command {
        let config = if *print_default {
            Config::default()
        } else {
            tracing::dispatcher::with_default(&logs, || Config::load(cli.config.as_deref()))?
        };
        let text = toml::to_string_pretty(&config)?;
        #[allow(clippy::print_stdout)]
        {
            print!("{text}");
        }
        return Ok(());
    }
    let mut config =
        tracing::dispatcher::with_default(&logs, || Config::load(cli.config.as_deref()))?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = Some(dir);
    }
    let telemetry = telemetry::init(cli.log_format, &config.telemetry, cli.command.role())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up {
                grpc_addr,
                registry_addr,
                web_addr,
                admin_password_file,
            } => {
                if admin_password_file.is_some() {
                    config.auth.admin_password_file = admin_password_file;
                }
                if web_addr.is_some() {
                    config.gateway.web_addr = web_addr;
                }
                if let Some(a) = grpc_addr {
                    config.gateway.grpc_addr = a;
                }
                if registry_addr.is_some() {
                    config.gateway.registry_addr = registry_addr;
                }
                roles::up(config).await
            }
            Command::Ingest => roles::ingest(config).await,
            Command::Process { catch_up } => roles::process(config, catch_up).await,
            Command::Notify => roles::notify(config).await,
            Command::Gateway {
                grpc_addr,
                web_addr,
            } => {
                if web_addr.is_some() {
                    config.gateway.web_addr = web_addr;
                }
                if let Some(a) = grpc_addr {
                    config.gateway.grpc_addr = a;
                }
                roles::gateway(config).await
            }
            Command::Registry { addr } => {
                if addr.is_some() {
                    config.gateway.registry_addr = addr;
                }
                roles::registry(config).await
            }
            Command::ConnectHa { gateway, mqtt_url } => {
                let ha = &mut config.home_assistant;
                if let Some(url) = gateway {
                    ha.gateway_url = url;
                }
                if let Some(url) = mqtt_url {
                    ha.mqtt.get_or_insert_with(Default::default).url = url;
                }
                roles::connect_ha(config).await
            }
            Command::Watch {
                addr,
                device,
                from_start,
                token,
            } => watch::watch(addr, device, from_start, token).await,
            Command::User(command) => accounts::user(&config, command).await,
            Command::Token(command) => accounts::token(&config, command).await,
            Command::Backup { file, ops_addr } => backup::backup(&config, &file, ops_addr).await,
            Command::Restore { file, force } => {
                tokio::task::spawn_blocking(move || backup::restore(&config, &file, force)).await?
            }
            Command::Rebuild {
                discard_older_history,
            } => rebuild::run(config, discard_older_history).await,
            Command::Sql(args) => analytics::sql(&config, args).await,
            Command::Export(args) => analytics::export(&config, args).await,
            Command::Config { .. } | Command::EvalPredictions { .. } | Command::Status => Ok(()),
        }
    });
    // The exporter's last spans go out once every role has stopped.
    drop(runtime);
    telemetry.shutdown();
    result
}
