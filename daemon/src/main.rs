//! flotillad: parse flags, set up logging, turn signals into a shutdown, and run the daemon.

use clap::Parser;
use flotilla_daemon::config::DaemonConfig;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// The flotilla daemon: keeps fleets and runs, serves the socket protocol.
#[derive(Parser)]
#[command(name = "flotillad", version)]
struct Args {
    /// Socket path [default: $XDG_RUNTIME_DIR/flotilla/flotilla.sock, else <data dir>/flotilla.sock]
    #[arg(long, env = "FLOTILLA_SOCKET")]
    socket: Option<PathBuf>,
    /// State directory [default: $XDG_STATE_HOME/flotilla or ~/.local/state/flotilla]
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Daemon configuration file [default: <data dir>/config.yml]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Let this group's members use the socket (0660, for a system daemon) [config: socket_group]
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Seal every credential the store keeps under a new key, replace `<data dir>/key`, and exit
    /// (stop the daemon first)
    #[arg(long)]
    rotate_key: bool,
    /// Where the HTTP server in front of services listens: IP:PORT (port 0: any free port) or
    /// `off` [config: http_listen; default 127.0.0.1:3000]
    #[arg(long, value_name = "ADDR", env = "FLOTILLA_HTTP")]
    http: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config =
        match DaemonConfig::resolve(args.data_dir, args.socket, args.config, args.socket_group) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("flotillad: {e:#}");
                return std::process::ExitCode::from(2);
            }
        };
    if let Some(http) = &args.http {
        match flotilla_daemon::config::HttpListen::parse(http) {
            Ok(h) => config.http_listen = h,
            Err(e) => {
                eprintln!("flotillad: --http: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let _guard = init_tracing(&config.data_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flotillad: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if args.rotate_key {
        return match runtime.block_on(flotilla_daemon::rotate::rotate_key(&config.data_dir)) {
            Ok(done) => {
                println!(
                    "flotillad: new key in place; re-sealed {} secrets, {} users' private keys, {} registry passwords, {} values in config.yml. Back up the new key; the old one opens nothing now.",
                    done.secrets, done.user_keys, done.registry_passwords, done.config_values
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flotillad: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        flotilla_daemon::run(config, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("flotillad: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        shutdown.cancel();
    });
}

/// Logs to stderr and to `<data dir>/logs/flotillad.YYYY-MM-DD.log`, rotated daily, 7 kept.
fn init_tracing(data_dir: &std::path::Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::prelude::*;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("flotillad")
        .filename_suffix("log")
        .max_log_files(7)
        .build(data_dir.join("daemon-logs"));
    match appender {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let file = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
            tracing_subscriber::registry()
                .with(stderr)
                .with(file)
                .init();
            Some(guard)
        }
        Err(e) => {
            tracing_subscriber::registry().with(stderr).init();
            tracing::warn!("cannot write daemon logs under {}: {e}", data_dir.display());
            None
        }
    }
}
