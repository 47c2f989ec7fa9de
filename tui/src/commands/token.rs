//! `flotilla token`: the caller's token for services' HTTP endpoints (`Authorization: Bearer
//! TOKEN`), or with `--refresh` a new one (the old one stops working).

use crate::connect::{connect_or_start as connect, Target};
use flotilla_protocol::rpc::{methods, NoParams};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Replace your token with a new one; the old one stops working at once
    #[arg(long)]
    pub refresh: bool,
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<ExitCode> {
    let client = connect(target).await?;
    let user = if args.refresh {
        client
            .call::<methods::UserRefreshToken>(&NoParams {})
            .await?
    } else {
        client.call::<methods::UserMe>(&NoParams {}).await?
    };
    let Some(token) = user.token else {
        anyhow::bail!("the daemon sent no token: it predates tokens; restart it (`flotilla daemon stop`) with this version");
    };
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
