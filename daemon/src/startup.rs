//! Top layer, start-up: opens the store, logs, local host, catalog and backends, builds the
//! handle, sets up the local fleet, starts the loops and serves the socket; on shutdown drains
//! and flushes.

use crate::config::{self, DaemonConfig};
use crate::handle::{Daemon, Parts};
use crate::hosts::{self, Host, LocalHost};

use crate::sealing::SealingKey;
use crate::{api, backends, catalog, http, logs, loops, notify, ops, store};
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Runs the daemon until `shutdown` is cancelled (SIGTERM, `daemon.stop`), then drains:
/// requests in flight are answered, the store is flushed, the socket removed. Jobs keep running.
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    if let Err(e) =
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
    {
        warn!(
            "cannot make {} private (0700): {e}",
            config.data_dir.display()
        );
    }
    let group = match &config.socket_group {
        Some(name) => Some(api::access::SocketGroup::lookup(name).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    let listener = api::socket::bind(&config.socket, group.as_ref())?;
    let socket_path = config.socket.clone();
    let result = serve(config, shutdown, listener, api::access::Access::new(group)).await;
    if let Err(e) = std::fs::remove_file(&socket_path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!("cannot remove the socket {}: {e}", socket_path.display());
        }
    }
    result
}

async fn serve(
    config: DaemonConfig,
    shutdown: CancellationToken,
    listener: api::socket::Listener,
    access: api::access::Access,
) -> anyhow::Result<()> {
    let store = store::Store::open(&config.data_dir.join("state"))?;
    let logs = logs::LogHub::new(&config.data_dir.join("logs"))
        .with_context(|| format!("cannot create the log dir in {}", config.data_dir.display()))?;
    let local = Host::Local(LocalHost::install(
        &config.data_dir.join(hosts::local::HOST_DIR),
    )?);
    // A root daemon runs users' jobs as them under `host/jobs`: they may traverse the data
    // dir to their own job, and nothing else in it is theirs to read.
    hosts::local::share_data_dir_with_jobs(&config.data_dir).with_context(|| {
        format!(
            "cannot set the permissions of the data dir {}",
            config.data_dir.display()
        )
    })?;
    let catalog = catalog_service(&config);
    let sealing = crate::sealing::load_for_daemon(&config.data_dir.join("key"))?;
    let gateway_key = api::gateway::host_key(&config.data_dir)?;
    let backends =
        backends_from(&config, &catalog, &sealing, &shutdown).map_err(|e| anyhow::anyhow!(e))?;
    let d = Daemon::new(Parts {
        config,
        store,
        logs,
        local,
        catalog,
        backends,
        sealing,
        gateway_key,
        shutdown: shutdown.clone(),
    });
    ops::local_fleet::ensure_local_fleet(&d).await?;
    d.backends().reconcile(&d.store().list_instances()?);
    if d.config().live_catalog {
        d.catalog().spawn_refresh(shutdown.clone());
    }
    // The cloud backends' live offers before the first scheduling pass (bounded: a provider
    // that does not answer leaves the catalog's offers as they are, and the cloud loop tries
    // again).
    if d.backends().list().iter().any(|b| b.cloud().is_some()) {
        for e in d
            .backends()
            .refresh(std::time::Duration::from_secs(5))
            .await
        {
            warn!("live offers: {e}");
        }
    }
    let loops = loops::spawn_all(&d);
    // The HTTP endpoint of services; an address that cannot be bound leaves the daemon up
    // without it (`daemon status` says why).
    let http_server = http::bind(&d)
        .await
        .map(|listener| tokio::spawn(http::serve(d.clone(), listener)));
    info!(socket = %d.config().socket.display(), data_dir = %d.config().data_dir.display(), "flotillad ready");
    notify::notify("READY=1");
    api::serve(d.clone(), listener, access).await;
    notify::notify("STOPPING=1");
    info!("shutting down: jobs keep running and are picked up at the next start");
    if let Some(h) = http_server {
        if let Err(e) = h.await {
            warn!("the HTTP server ended badly: {e}");
        }
    }
    for l in loops {
        if tokio::time::timeout(std::time::Duration::from_secs(5), l)
            .await
            .is_err()
        {
            warn!("a background loop did not stop within 5s");
        }
    }
    d.store().flush().await?;
    Ok(())
}

/// The configured backends; the clear API keys of cloud backends are sealed in `config.yml`
/// first, and the daemon's SSH key for cloud machines is made when one is configured.
fn backends_from(
    config: &DaemonConfig,
    catalog: &catalog::CatalogService,
    sealing: &SealingKey,
    shutdown: &CancellationToken,
) -> Result<backends::Backends, String> {
    let any_cloud = config.backends.iter().any(|b| b.cloud().is_some());
    let cloud_key = if any_cloud {
        for w in backends::cloud::setup::seal_keys_in_file(
            &config.config_file,
            &config.backends,
            sealing,
        )? {
            warn!("{w}");
        }
        Some(backends::cloud::key::CloudKey::load_or_create(
            &config.data_dir.join("cloud_key"),
        )?)
    } else {
        None
    };
    let mut list: Vec<Arc<dyn backends::Backend>> = Vec::new();
    for b in &config.backends {
        match (b, &cloud_key) {
            (config::BackendConfig::Pool(p), _) => {
                list.push(Arc::new(backends::pool::PoolBackend::new(p.clone())));
            }
            (config::BackendConfig::Slurm(s), _) => {
                let slurm = Arc::new(backends::slurm::SlurmBackend::new(s.clone()));
                // Offers are read in the background from the start.
                slurm.spawn_refresh(shutdown.clone());
                list.push(slurm);
            }
            (_, Some(key)) => {
                if let Some(c) = backends::cloud::setup::build(b, catalog, sealing, key)? {
                    list.push(Arc::new(c));
                }
            }
            (_, None) => {}
        }
    }
    Ok(backends::Backends::new(list))
}

fn catalog_service(config: &DaemonConfig) -> catalog::CatalogService {
    if let Some(dir) = &config.catalog_dir {
        match catalog::CatalogService::from_dir(dir) {
            Ok(c) => return c,
            Err(e) => warn!("catalog_dir {}: {e}; no backend offers", dir.display()),
        }
    }
    if config.live_catalog {
        return catalog::CatalogService::live(
            &config.data_dir,
            &config.catalog_url,
            std::time::Duration::from_secs(config.catalog_refresh_secs.max(60)),
        );
    }
    catalog::CatalogService::empty()
}
