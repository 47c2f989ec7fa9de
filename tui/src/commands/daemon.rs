//! `flotilla daemon start|stop|status`: the daemon's life, seen from the command line.

use super::print_json;
use crate::connect::{connect, start_daemon, Target};
use flotilla_protocol::rpc::{methods, DaemonStatus, NoParams};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum DaemonCommand {
    /// Start the daemon in the background (no-op when it runs)
    Start,
    /// Stop the daemon; running jobs keep running and are picked up at the next start
    Stop,
    /// Socket, pid, version, uptime, data dir and counts
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(target: &Target, cmd: DaemonCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DaemonCommand::Start => {
            if connect(target).await.is_ok() {
                println!(
                    "flotillad is already running on {}",
                    target.socket.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let pid = start_daemon(target).await?;
            println!(
                "flotillad started (pid {pid}) on {}",
                target.socket.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Stop => {
            let Ok(client) = connect(target).await else {
                println!("flotillad is not running on {}", target.socket.display());
                return Ok(ExitCode::SUCCESS);
            };
            client.call::<methods::DaemonStop>(&NoParams {}).await?;
            let deadline = Instant::now() + Duration::from_secs(15);
            while target.socket.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("flotillad stopped");
            Ok(ExitCode::SUCCESS)
        }
        DaemonCommand::Status { json } => {
            let client = match connect(target).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("flotillad is not running: {e}");
                    return Ok(ExitCode::from(3));
                }
            };
            let s: DaemonStatus = client.call::<methods::DaemonStatus>(&NoParams {}).await?;
            if json {
                print_json(&s)?;
            } else {
                println!("socket     {}", s.socket);
                println!("pid        {}", s.pid);
                println!("version    {} (protocol {})", s.version, s.protocol);
                println!("uptime     {}s", s.uptime_secs);
                println!("data dir   {}", s.data_dir);
                let http = match (&s.http.address, &s.http.error) {
                    (Some(a), _) => format!("http://{a}/proxy/services/main/"),
                    (None, Some(e)) => format!("down: cannot listen on {}: {e}", s.http.listen),
                    (None, None) => "off".to_string(),
                };
                println!("http       {http}");
                println!(
                    "runs       {} ({} active)\nfleets     {}\ninstances  {}",
                    s.runs, s.active_runs, s.fleets, s.instances
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
