//! flotilla: the scripting command line of flotilla (the dashboard comes with no arguments).

use clap::{Parser, Subcommand};
use flotilla_tui::connect::Target;
use flotilla_tui::{closed_stdout, commands, ui};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Run dstack configurations on your GPU machines"
)]
struct Cli {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/flotilla/flotilla.sock, else the state dir]
    #[arg(long, global = true, env = "FLOTILLA_SOCKET")]
    socket: Option<PathBuf>,
    /// The daemon's state dir, when this command starts the daemon
    #[arg(long, global = true, env = "FLOTILLA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Plan, submit and follow a task, service or dev environment
    Apply(commands::apply::Args),
    /// List runs
    Ps(commands::runs::PsArgs),
    /// Print a run's logs
    Logs(commands::runs::LogsArgs),
    /// Stop a run (SIGTERM, then SIGKILL after stop_duration; -x at once)
    Stop(commands::runs::StopArgs),
    /// Delete a finished run and its logs
    Delete(commands::runs::DeleteArgs),
    /// Wait for a run's job, forward its ports (and -p LOCAL:REMOTE), follow its logs
    Attach(commands::attach::Args),
    /// A shell (or `-- COMMAND`) in a run's job, in its working directory
    Ssh(commands::ssh::Args),
    /// The byte stream to a job's host (the ProxyCommand of `flotilla ssh`)
    #[command(hide = true)]
    Tunnel(commands::ssh::TunnelArgs),
    /// The SSH session into a job through the daemon's gateway (the ProxyCommand of `ssh RUN`)
    #[command(hide = true)]
    Gateway(commands::ssh::TunnelArgs),
    /// Fleets and their instances
    #[command(subcommand)]
    Fleet(commands::fleet::FleetCommand),
    /// The daemon's backends: credentials, instances, orphans
    #[command(subcommand)]
    Backend(commands::backend::BackendCommand),
    /// GPU utilisation and memory of a run's GPUs (last hour)
    Metrics(commands::metrics::Args),
    /// Offers: instances in fleets and backend catalogs matching a requirement
    Offer(commands::offer::Args),
    /// State changes of runs, jobs, instances and fleets
    Event(commands::event::Args),
    /// Check a configuration file and print it normalized
    Validate(commands::validate::Args),
    /// The daemon's secrets, used in runs as `${{ secrets.NAME }}`
    #[command(subcommand)]
    Secret(commands::secret::SecretCommand),
    /// Start, stop or inspect the daemon
    #[command(subcommand)]
    Daemon(commands::daemon::DaemonCommand),
    /// Your token for services' HTTP endpoints (`Authorization: Bearer TOKEN`)
    Token(commands::token::Args),
}

fn main() -> ExitCode {
    closed_stdout::install_panic_hook();
    let cli = Cli::parse();
    let target = Target {
        socket: cli
            .socket
            .unwrap_or_else(flotilla_protocol::paths::default_socket_path),
        data_dir: cli.data_dir,
    };
    let Some(command) = cli.command else {
        // The dashboard: several threads, so that the daemon link runs while a frame is drawn.
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("flotilla: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match runtime.block_on(ui::run(&target)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("flotilla: {}", commands::error_text(&e));
                ExitCode::FAILURE
            }
        };
    };
    // Validation is local and needs no runtime.
    if let Command::Validate(args) = &command {
        return commands::validate::run(args);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flotilla: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Apply(a) => commands::apply::run(&target, a).await,
            Command::Ps(a) => commands::runs::ps(&target, a).await,
            Command::Logs(a) => commands::runs::logs(&target, a).await,
            Command::Stop(a) => commands::runs::stop(&target, a).await,
            Command::Delete(a) => commands::runs::delete(&target, a).await,
            Command::Fleet(c) => commands::fleet::run(&target, c).await,
            Command::Backend(c) => commands::backend::run(&target, c).await,
            Command::Ssh(a) => commands::ssh::run(&target, a).await,
            Command::Attach(a) => commands::attach::run(&target, a).await,
            Command::Tunnel(a) => commands::ssh::tunnel(&target, a).await,
            Command::Gateway(a) => commands::ssh::gateway(&target, a).await,
            Command::Offer(a) => commands::offer::run(&target, a).await,
            Command::Metrics(a) => commands::metrics::run(&target, a).await,
            Command::Event(a) => commands::event::run(&target, a).await,
            Command::Daemon(c) => commands::daemon::run(&target, c).await,
            Command::Secret(c) => commands::secret::run(&target, c).await,
            Command::Token(a) => commands::token::run(&target, a).await,
            Command::Validate(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if closed_stdout::is_closed_stdout(&e) => closed_stdout::die_of_sigpipe(),
        Err(e) => {
            eprintln!("flotilla: {}", commands::error_text(&e));
            ExitCode::FAILURE
        }
    }
}
