//! `conclave`: the command-line front end of the Conclave toolkit.

/// `println!` that ends the process quietly when standard output is gone (a closed pipe,
/// as in `conclave demo | head`), instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// mimalloc instead of glibc's allocator: the hot paths allocate and free buffers of a
/// few kilobytes per message, which glibc keeps returning to the kernel and taking back
/// (a page fault per message under load); mimalloc reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_cpg;
mod bench_data;
mod bench_keys_daemon;
mod bench_processes;
mod bench_relay;
mod bench_window;
mod chat;
mod daemon;
mod daemon_config;
mod demo;
mod embedded;
mod keygen;
mod plot;
mod plugins;
mod policy_cmd;
mod render;
mod scaffold;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Conclave: secure group communication. Processes join named groups and exchange
/// ordered messages with view-synchronous membership; a secure group keeps a shared key
/// that every membership change replaces (contributory GDH or centralized CKD) and
/// seals every message with it. Policy files pick the key agreement, cipher and crypto
/// provider per group, from built-in plugins or shared libraries.
#[derive(Debug, Parser)]
#[command(
    name = "conclave",
    version,
    about = "Conclave: secure group communication (view-synchronous groups whose key every membership change replaces)",
    long_about,
    propagate_version = true
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax); also read from CONCLAVE_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,

    /// Serve Prometheus metrics at this address (`IP:PORT`, path `/metrics`) while the
    /// command runs: the daemon's traffic, queues, views and disconnects, the sessions'
    /// rekeys and security errors (docs/operations.md).
    #[arg(long, global = true, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, inspect and check plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Run the group-communication daemon until SIGTERM.
    Daemon(daemon::DaemonArgs),
    /// Run the whole system in one process: an embedded engine and N members joining,
    /// talking, leaving, crashing and coming back, as a timeline.
    Demo(demo::DemoArgs),
    /// Measure key agreements and the data path side by side (tables, charts, JSON).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Chat in a secure group through a daemon or Corosync (lines in, events out; ends
    /// at the end of its input).
    Chat(chat::ChatArgs),
    /// Show a daemon's groups (view, modules in force, epoch, key age, as the members
    /// report them, signed) and its own figures (connections, queues, disconnects).
    Status(status::StatusArgs),
    /// Check a policy file, or explain what it gives a group.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Make an identity: NAME.key (secret, mode 0600) and NAME.pub (for trust stores).
    Keygen(keygen::KeygenArgs),
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_env("CONCLAVE_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref());
    conclave_builtins::link();
    if let Some(addr) = cli.metrics {
        // Durations (`*_seconds`) as Prometheus histograms, from 0.5 ms to 10 s.
        const BUCKETS: [f64; 14] = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let installed = metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &BUCKETS,
            )
            .and_then(|b| b.install());
        if let Err(e) = installed {
            eprintln!("cannot serve metrics at {addr}: {e}");
            return ExitCode::from(2);
        }
    }
    match cli.command {
        Command::Plugins(cmd) => plugins::run(cmd),
        Command::Daemon(args) => daemon::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Status(args) => status::run(args),
    }
}
