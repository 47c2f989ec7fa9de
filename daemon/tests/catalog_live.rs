//! The live catalog against a small HTTP server run by the test (127.0.0.1, real sockets,
//! real zips built from the shared catalogs): new versions are fetched and swapped in, an
//! unreachable server leaves the cache in use with a warning, a corrupt zip keeps the previous
//! catalog. Refreshes are driven with `refresh_once`, never with sleeps.

use flotilla_daemon::catalog::{CatalogService, LiveConfig, ProviderRefresh, Requirements};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn shared_catalog(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/catalogs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn zip_of(entry: &str, content: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    writer.start_file(entry, options).expect("zip entry");
    writer.write_all(content.as_bytes()).expect("zip write");
    writer.finish().expect("zip finish").into_inner()
}

/// Path -> body; absent paths answer 404. Counts requests per path.
#[derive(Clone, Default)]
struct Site {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Site {
    fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.files
            .lock()
            .expect("site")
            .insert(path.to_string(), body.into());
    }

    fn publish(&self, provider: &str, version: &str, zip: Vec<u8>) {
        self.put(&format!("/v3/{provider}/version"), format!("{version}\n"));
        self.put(&format!("/v3/{provider}/{version}/catalog.zip"), zip);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// A minimal HTTP/1.1 server: one GET per connection, `Connection: close`.
struct Server {
    base_url: String,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(site: Site) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let site = site.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                *site
                    .hits
                    .lock()
                    .expect("hits")
                    .entry(path.clone())
                    .or_default() += 1;
                let body = site.files.lock().expect("site").get(&path).cloned();
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Server {
        base_url: format!("http://{addr}/v3"),
        task,
    }
}

/// A base URL where nothing listens (a port bound, then released).
async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/v3")
}

fn config(state: &Path, base_url: &str) -> LiveConfig {
    let mut config = LiveConfig::new(state, base_url, Duration::from_secs(3600));
    config.providers = vec!["aws".into(), "runpod".into()];
    config.version_timeout = Duration::from_secs(5);
    config.download_timeout = Duration::from_secs(10);
    config
}

fn all() -> Requirements {
    Requirements {
        resources: flotilla_protocol::config::ResourcesSpec {
            cpu: flotilla_protocol::config::CpuSpec {
                arch: None,
                count: flotilla_protocol::config::Range::at_least(0),
            },
            memory: flotilla_protocol::config::Range::at_least(0.0),
            ..Default::default()
        },
        ..Requirements::default()
    }
}

fn backends(service: &CatalogService) -> HashMap<String, usize> {
    let (offers, _) = service.query(&all());
    let mut counts = HashMap::new();
    for o in offers {
        *counts.entry(o.backend).or_default() += 1;
    }
    counts
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn new_versions_are_fetched_cached_and_swapped_in() {
    let site = Site::default();
    site.publish(
        "aws",
        "20250101-1",
        zip_of("aws.csv", &shared_catalog("aws.csv")),
    );
    site.publish(
        "runpod",
        "20250101-1",
        zip_of("runpod.csv", &shared_catalog("runpod.csv")),
    );
    let server = serve(site.clone()).await;
    let state = tempfile::tempdir().expect("state");
    let service = CatalogService::live_with(config(state.path(), &server.base_url));
    assert_eq!(
        service.query(&all()).1,
        0,
        "nothing before the first refresh"
    );
    assert!(
        !service.warnings().is_empty(),
        "the status says it is not loaded yet"
    );

    let report = service.refresh_once().await;
    assert_eq!(
        report.get("aws"),
        Some(&ProviderRefresh::Updated {
            version: "20250101-1".into()
        })
    );
    assert!(report.reloaded);
    assert_eq!(backends(&service).get("aws"), Some(&114));
    assert_eq!(backends(&service).get("runpod"), Some(&640));
    assert!(service.warnings().is_empty(), "{:?}", service.warnings());
    let stats = service.stats();
    assert_eq!(stats.rows, 754);
    assert!(stats
        .sources
        .iter()
        .all(|s| s.version.as_deref() == Some("20250101-1")));
    // The cache: version and CSV per provider.
    let aws_dir = state.path().join("catalog/aws");
    assert_eq!(read(aws_dir.join("version")).trim(), "20250101-1");
    assert_eq!(read(aws_dir.join("aws.csv")), shared_catalog("aws.csv"));

    // Same version again: nothing downloaded, nothing reloaded.
    let report = service.refresh_once().await;
    assert!(matches!(
        report.get("aws"),
        Some(ProviderRefresh::Unchanged { .. })
    ));
    assert!(!report.reloaded);
    assert_eq!(site.hits("/v3/aws/20250101-1/catalog.zip"), 1);

    // A new aws version with only the g5 rows (a zip with a folder inside): swapped in.
    let aws = shared_catalog("aws.csv");
    let mut lines = aws.lines();
    let header = lines.next().expect("header");
    let g5: Vec<&str> = lines.filter(|l| l.starts_with("g5.")).collect();
    assert!(!g5.is_empty());
    let smaller = format!("{header}\n{}\n", g5.join("\n"));
    site.publish("aws", "20250102-1", zip_of("catalogs/aws.csv", &smaller));
    let before = service.snapshot();
    let report = service.refresh_once().await;
    assert_eq!(
        report.get("aws"),
        Some(&ProviderRefresh::Updated {
            version: "20250102-1".into()
        })
    );
    assert_eq!(backends(&service).get("aws"), Some(&g5.len()));
    assert_eq!(backends(&service).get("runpod"), Some(&640));
    assert_eq!(
        before.len(),
        754,
        "a snapshot taken before the swap stays whole"
    );
    assert_eq!(read(aws_dir.join("version")).trim(), "20250102-1");
    server.task.abort();
}

#[tokio::test]
async fn unreachable_server_means_the_cache_is_used_with_a_warning() {
    let state = tempfile::tempdir().expect("state");
    {
        let site = Site::default();
        site.publish(
            "aws",
            "20250101-1",
            zip_of("aws.csv", &shared_catalog("aws.csv")),
        );
        let server = serve(site).await;
        let service = CatalogService::live_with(config(state.path(), &server.base_url));
        let report = service.refresh_once().await;
        assert!(matches!(
            report.get("aws"),
            Some(ProviderRefresh::Updated { .. })
        ));
        // runpod is not published there: no offers from it, and the status says so.
        assert!(matches!(
            report.get("runpod"),
            Some(ProviderRefresh::Failed { cached: None, .. })
        ));
        let warnings = service.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("runpod") && warnings[0].contains("404"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("no offers from runpod"),
            "{warnings:?}"
        );
        server.task.abort();
    }

    // A restarted daemon, offline: the cached aws catalog is used, with a warning.
    let service = CatalogService::live_with(config(state.path(), &dead_url().await));
    let report = service.refresh_once().await;
    match report.get("aws") {
        Some(ProviderRefresh::Failed { error, cached }) => {
            assert_eq!(cached.as_deref(), Some("20250101-1"));
            assert!(error.contains("/v3/aws/version"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(report.reloaded);
    assert_eq!(backends(&service).get("aws"), Some(&114));
    let warnings = service.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("2 of 2 providers not refreshed")
            && warnings[0].contains("using the cached catalog of aws (20250101-1)")
            && warnings[0].contains("no offers from runpod"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_corrupt_zip_keeps_the_previous_catalog() {
    let site = Site::default();
    site.publish(
        "aws",
        "20250101-1",
        zip_of("aws.csv", &shared_catalog("aws.csv")),
    );
    site.publish(
        "runpod",
        "20250101-1",
        zip_of("runpod.csv", &shared_catalog("runpod.csv")),
    );
    let server = serve(site.clone()).await;
    let state = tempfile::tempdir().expect("state");
    let service = CatalogService::live_with(config(state.path(), &server.base_url));
    service.refresh_once().await;
    assert_eq!(backends(&service).get("aws"), Some(&114));

    // Not a zip at all; a zip without aws.csv; a zip whose CSV is not a catalog.
    let corrupt: [(&str, Vec<u8>, &str); 3] = [
        (
            "20250102-1",
            b"PK\x03\x04 this is not a zip".to_vec(),
            "not a readable zip",
        ),
        (
            "20250102-2",
            zip_of("other.csv", "a,b\n1,2\n"),
            "holds no aws.csv",
        ),
        (
            "20250102-3",
            zip_of("aws.csv", "a,b\n1,2\n"),
            "no `instance_name` column",
        ),
    ];
    for (version, body, why) in corrupt {
        site.publish("aws", version, body);
        let report = service.refresh_once().await;
        match report.get("aws") {
            Some(ProviderRefresh::Failed { error, cached }) => {
                assert!(error.contains(why), "{version}: {error}");
                assert!(error.contains("previous catalog is kept"), "{error}");
                assert_eq!(cached.as_deref(), Some("20250101-1"));
            }
            other => panic!("{version}: expected a failure, got {other:?}"),
        }
        assert!(!report.reloaded);
        assert_eq!(backends(&service).get("aws"), Some(&114), "{version}");
        assert_eq!(backends(&service).get("runpod"), Some(&640));
        let cached = read(state.path().join("catalog/aws/version"));
        assert_eq!(cached.trim(), "20250101-1");
        assert!(
            service.warnings()[0].contains("aws"),
            "{:?}",
            service.warnings()
        );
    }

    // A bad version text is refused before anything is downloaded.
    site.put("/v3/aws/version", "../../etc/passwd");
    let report = service.refresh_once().await;
    assert!(
        matches!(report.get("aws"), Some(ProviderRefresh::Failed { error, .. }) if error.contains("not a catalog version"))
    );

    // Fixed upstream: the next refresh takes it.
    site.publish(
        "aws",
        "20250103-1",
        zip_of("aws.csv", &shared_catalog("aws.csv")),
    );
    let report = service.refresh_once().await;
    assert!(matches!(
        report.get("aws"),
        Some(ProviderRefresh::Updated { .. })
    ));
    assert!(service.warnings().is_empty(), "{:?}", service.warnings());
    server.task.abort();
}

#[tokio::test]
async fn the_background_task_stops_on_shutdown() {
    let site = Site::default();
    site.publish(
        "aws",
        "20250101-1",
        zip_of("aws.csv", &shared_catalog("aws.csv")),
    );
    let server = serve(site.clone()).await;
    let state = tempfile::tempdir().expect("state");
    let service = CatalogService::live_with(config(state.path(), &server.base_url));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = service.spawn_refresh(shutdown.clone());
    // Wait for the first refresh's download by watching the server, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while backends(&service).get("aws") != Some(&114) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first refresh never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ends on shutdown")
        .expect("the task did not panic");
    server.task.abort();
}
