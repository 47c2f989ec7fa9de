//! flotilla-daemon: the daemon behind `flotillad`. [`run`] serves the socket until shutdown.

pub mod api;
pub mod backends;
pub mod catalog;
pub mod config;
pub mod fleets;
pub mod hashing;
pub mod hosts;
pub mod lifecycle;
pub mod logs;
pub mod loops;
pub mod notify;
pub mod offers;
pub mod runs;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod users;

use anyhow::Context;
use config::DaemonConfig;
use flotilla_protocol::model::{Fleet, FleetStatus, Instance, InstanceStatus};
use flotilla_protocol::Timestamp;
use hosts::{Host, LocalHost};
use state::{Daemon, Inner};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The name of the fleet that holds this machine.
pub const LOCAL_FLEET: &str = "local";

/// Runs the daemon until `shutdown` is cancelled (SIGTERM, `daemon.stop`), then drains:
/// requests in flight are answered, the store is flushed, the socket removed. Jobs keep running.
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
    let listener = api::socket::bind(&config.socket)?;
    let socket_path = config.socket.clone();
    let result = serve(config, shutdown, listener).await;
    let _ = std::fs::remove_file(&socket_path);
    result
}

async fn serve(
    config: DaemonConfig,
    shutdown: CancellationToken,
    listener: std::os::unix::net::UnixListener,
) -> anyhow::Result<()> {
    let store = store::Store::open(&config.data_dir.join("state"))?;
    let logs = logs::LogHub::new(&config.data_dir.join("logs"))
        .with_context(|| format!("cannot create the log dir in {}", config.data_dir.display()))?;
    let local = Host::Local(LocalHost::install(&config.data_dir.join("host"))?);
    let catalog = catalog_service(&config);
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let backends = backends_from(&config);
    let d = Daemon(Arc::new(Inner {
        store,
        logs,
        local,
        catalog,
        events,
        wake: tokio::sync::Notify::new(),
        shutdown: shutdown.clone(),
        started_at: Timestamp::now(),
        runners: Mutex::new(Default::default()),
        publish_lock: Mutex::new(()),
        ssh_hosts: Mutex::new(Default::default()),
        instances_wake: tokio::sync::Notify::new(),
        metrics: Default::default(),
        backends,
        config,
    }));
    ensure_local_fleet(&d).await?;
    d.backends.reconcile(&d.store.list_instances()?);
    if d.config.live_catalog {
        d.catalog.spawn_refresh(shutdown.clone());
    }
    let loops = loops::spawn_all(&d);
    let listener = tokio::net::UnixListener::from_std(listener)
        .context("cannot register the socket with the runtime")?;
    info!(socket = %d.config.socket.display(), data_dir = %d.config.data_dir.display(), "flotillad ready");
    notify::notify("READY=1");
    api::serve(d.clone(), listener).await;
    notify::notify("STOPPING=1");
    info!("shutting down: jobs keep running and are picked up at the next start");
    for l in loops {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), l).await;
    }
    d.store.flush().await?;
    Ok(())
}

fn backends_from(config: &DaemonConfig) -> backends::Backends {
    let list: Vec<Arc<dyn backends::Backend>> = config
        .backends
        .iter()
        .map(|b| match b {
            config::BackendConfig::Pool(p) => {
                Arc::new(backends::pool::PoolBackend::new(p.clone())) as Arc<dyn backends::Backend>
            }
        })
        .collect();
    backends::Backends::new(list)
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

/// Creates the `local` fleet with this machine at first start; refreshes its resources later.
async fn ensure_local_fleet(d: &Daemon) -> anyhow::Result<()> {
    let inv = hosts::supervisor::inventory(&d.local)
        .await
        .context("cannot inspect the local machine")?;
    let resources = inv.resources();
    // blocks: auto — one block per GPU, or per CPU on a machine without GPUs.
    let total_blocks = if resources.gpus.is_empty() {
        resources.cpus.max(1)
    } else {
        resources.gpus.len() as u32
    };
    let now = Timestamp::now();
    if d.store.get_fleet(LOCAL_FLEET)?.is_none() {
        d.store.put_fleet(&Fleet {
            id: d.store.next_id()?,
            name: LOCAL_FLEET.into(),
            status: FleetStatus::Active,
            user: api::socket::user_name(
                // SAFETY: getuid has no preconditions.
                unsafe { libc::getuid() },
            ),
            created_at: now,
            configuration: None,
            instances: Vec::new(),
        })?;
    }
    let existing = d
        .store
        .list_instances()?
        .into_iter()
        .find(|i| i.fleet == LOCAL_FLEET);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok();
    let instance = Instance {
        id: match &existing {
            Some(i) => i.id,
            None => d.store.next_id()?,
        },
        name: format!("{LOCAL_FLEET}-0"),
        fleet: LOCAL_FLEET.into(),
        instance_num: 0,
        status: InstanceStatus::Idle,
        unreachable: false,
        termination_reason: None,
        backend: "local".into(),
        region: "local".into(),
        hostname,
        price: 0.0,
        resources,
        total_blocks,
        busy_blocks: 0,
        created_at: existing.map(|i| i.created_at).unwrap_or(now),
        error: None,
        ssh: None,
        host_key: None,
        backend_id: None,
        host_root: None,
        unreachable_since: None,
    };
    let events = d.store.put_instance(&instance)?;
    d.store.flush().await?;
    d.publish(events);
    Ok(())
}
