//! Sends packed archives with `file.upload`, each on a connection of its own: `hello`, the
//! request, then (unless the daemon has it from us already) the raw bytes after
//! `file.upload.ready`, then the daemon's answer. Large uploads show a progress line on stderr.

use super::Packed;
use crate::connect::Target;
use anyhow::{anyhow, bail, Context};
use flotilla_protocol::framing::{write_line, LineReader};
use flotilla_protocol::model::RunArchive;
use flotilla_protocol::rpc::{
    methods, FileUploadParams, FileUploadResult, Request, ServerMessage, PROTOCOL_VERSION,
};
use std::io::{IsTerminal, Read};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;

/// Archives at least this large get a progress line.
const PROGRESS_FROM: u64 = 4 * 1024 * 1024;

/// Uploads every archive and returns what `run.apply` names.
pub async fn upload_all(target: &Target, packed: Vec<Packed>) -> anyhow::Result<Vec<RunArchive>> {
    let mut out = Vec::new();
    for p in packed {
        let label = p.label();
        let archive = p.archive();
        upload(target, p)
            .await
            .map_err(|e| anyhow!("{label}: {e:#}"))?;
        out.push(archive);
    }
    Ok(out)
}

async fn next_message(
    reader: &mut LineReader<BufReader<OwnedReadHalf>>,
) -> anyhow::Result<ServerMessage> {
    let line = reader
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("the daemon closed the connection"))?;
    Ok(serde_json::from_slice(&line)?)
}

async fn upload(target: &Target, p: Packed) -> anyhow::Result<FileUploadResult> {
    let stream = UnixStream::connect(&target.socket)
        .await
        .with_context(|| format!("cannot connect to {}", target.socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(BufReader::new(read), 1 << 20);
    let hello = Request::new(
        1,
        methods::HELLO,
        serde_json::json!({"protocol": PROTOCOL_VERSION, "client": "flotilla-cli"}),
    );
    write_line(&mut write, &hello).await?;
    let params = FileUploadParams {
        hash: p.hash.clone(),
        size: p.size,
    };
    let request = Request::new(2, methods::FILE_UPLOAD, serde_json::to_value(&params)?);
    write_line(&mut write, &request).await?;
    if let ServerMessage::Response(r) = next_message(&mut reader).await? {
        if let Some(e) = r.error {
            bail!("{}", e.message);
        }
    }
    match next_message(&mut reader).await? {
        ServerMessage::Response(r) => return answer(r),
        ServerMessage::Notification(n) if n.method == methods::FILE_UPLOAD_READY => {}
        ServerMessage::Notification(n) => bail!("unexpected `{}` from the daemon", n.method),
    }
    send_bytes(&mut write, p).await?;
    match next_message(&mut reader).await? {
        ServerMessage::Response(r) => answer(r),
        ServerMessage::Notification(n) => bail!("unexpected `{}` from the daemon", n.method),
    }
}

fn answer(r: flotilla_protocol::rpc::Response) -> anyhow::Result<FileUploadResult> {
    if let Some(e) = r.error {
        bail!("{}", e.message);
    }
    Ok(serde_json::from_value(r.result.unwrap_or_default())?)
}

/// Streams the archive in 256 KiB pieces (never whole in memory), with a progress line when
/// it is large: rewritten in place on a terminal, every quarter otherwise.
async fn send_bytes(write: &mut tokio::net::unix::OwnedWriteHalf, p: Packed) -> anyhow::Result<()> {
    let label = p.label();
    let total = p.size;
    let show = total >= PROGRESS_FROM;
    let terminal = std::io::stderr().is_terminal();
    let mut file = p.file;
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent: u64 = 0;
    let mut shown_quarter = 0;
    loop {
        let n = file.read(&mut buf).context("reading the packed archive")?;
        if n == 0 {
            break;
        }
        write
            .write_all(&buf[..n])
            .await
            .context("the daemon closed the connection during the upload")?;
        sent += n as u64;
        if show {
            let quarter = sent * 4 / total.max(1);
            if terminal {
                eprint!("\ruploading {label}: {} / {}", mib(sent), mib(total));
            } else if quarter > shown_quarter {
                shown_quarter = quarter;
                eprintln!("uploading {label}: {} / {}", mib(sent), mib(total));
            }
        }
    }
    if show && terminal {
        eprintln!();
    }
    write.flush().await?;
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
