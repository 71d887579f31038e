//! What the HTTP benchmarks share: the release local stack as a child process on a given
//! database, a keep-alive HTTP/1.1 load generator at a fixed concurrency with latency
//! percentiles, the server's peak resident set, and database clean-up.
//!
//! The client is a small HTTP/1.1 writer and reader over tokio (requests with a
//! `Content-Length`, responses with a `Content-Length`, chunked or close-delimited bodies), so
//! the library needs no HTTP client crate and the load generator costs the 2-core benchmark
//! machine as little CPU as possible.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::test_db::{self, TestDb};

/// `BENCH_EVENTS`, or `default` when unset or not a number.
pub fn bench_events(default: usize) -> usize {
    std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `target/release/local-stack` of this workspace (or `LOCAL_STACK_BIN`); exits with
/// instructions when it has not been built, and warns when it is older than the sources.
pub fn local_stack_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LOCAL_STACK_BIN") {
        return PathBuf::from(path);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../target"));
    let binary = target.join("release/local-stack");
    if !binary.exists() {
        eprintln!(
            "{} does not exist: build the server first with\n\n    cargo build --release -p local-stack\n",
            binary.display()
        );
        std::process::exit(2);
    }
    warn_if_stale(&binary, &manifest.join(".."));
    binary
}

/// The newest modification time of the `.rs` and `.sql` files under `dir`.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs" || e == "sql") {
            entry.metadata().ok()?.modified().ok()
        } else {
            None
        };
        newest = newest.max(modified);
    }
    newest
}

fn warn_if_stale(binary: &Path, workspace: &Path) {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
    let sources = ["shared/src", "functions", "migrations"]
        .iter()
        .filter_map(|dir| newest_source(&workspace.join(dir)))
        .max();
    if let (Some(built), Some(sources)) = (built, sources)
        && sources > built
    {
        eprintln!(
            "warning: {} is older than the sources; rebuild with `cargo build --release -p local-stack`",
            binary.display()
        );
    }
}

/// Drops the database, or keeps it and says so when `BENCH_KEEP_DB=1`.
pub async fn drop_or_keep(db: &TestDb, label: &str) {
    if std::env::var("BENCH_KEEP_DB").is_ok_and(|keep| keep == "1") {
        eprintln!("{label}: database {} kept", db.name);
        return;
    }
    let admin = test_db::raw_connect(&test_db::admin_url()).await;
    if let Err(error) = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            db.name
        ))
        .await
    {
        eprintln!("drop database {}: {error}", db.name);
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap()
}

/// The peak resident set of a process in MiB, from `VmHWM` in `/proc/<pid>/status`.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The release local stack running as a child process (killed when dropped).
pub struct LocalStackProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
}

impl LocalStackProcess {
    /// Starts `binary` on a free port with `DATABASE_URL=database_url`, `RUST_LOG=warn` and
    /// `env`, and waits until it answers `GET /status.json`.
    pub async fn start(binary: &Path, database_url: &str, env: &[(&str, &str)]) -> Self {
        let addr = free_port();
        let mut command = tokio::process::Command::new(binary);
        command
            .arg("--listen")
            .arg(addr.to_string())
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        let pid = child.id().expect("the child runs");
        wait_ready(addr, &mut child).await;
        Self { child, pid, addr }
    }

    /// The server's peak resident set so far, in MiB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        peak_rss_mb(self.pid)
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        self.child.start_kill().ok();
        let _ = self.child.wait().await;
    }
}

/// Waits until `GET /status.json` answers (any HTTP status), or the child dies.
async fn wait_ready(addr: SocketAddr, child: &mut tokio::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the local stack exited during start-up: {status}");
        }
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let request =
                format!("GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut response = Vec::new();
                let _ = stream.read_to_end(&mut response).await;
                if response.starts_with(b"HTTP/1.1 ") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the local stack did not answer GET /status.json within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `p`th percentile of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let at = (sorted.len() * p / 100).min(sorted.len() - 1);
    Some(sorted[at].as_secs_f64() * 1_000.0)
}

/// Extra headers of one request, computed when it is sent (inside the timed span), from its
/// body — e.g. a signature over the body and the current time.
pub type HeadersFn = dyn Fn(&[u8]) -> Vec<(&'static str, String)> + Send + Sync;

/// Requests to replay: one `POST path` per body, each with `headers(body)` and a
/// `Content-Length`. A request succeeds when it is answered `200`.
pub struct Workload {
    pub path: String,
    pub bodies: Arc<Vec<Vec<u8>>>,
    pub headers: Arc<HeadersFn>,
}

/// What [`run`] measured.
pub struct HttpRun {
    pub requests: usize,
    pub seconds: f64,
    /// One per request, sorted.
    pub latencies: Vec<Duration>,
    /// Requests not answered `200` (or not answered at all).
    pub failed: usize,
    /// Their indices in the workload, sorted.
    pub failed_requests: Vec<usize>,
    /// A few of those failures, for the log.
    pub samples: Vec<String>,
}

impl HttpRun {
    pub fn p50_ms(&self) -> Option<f64> {
        percentile(&self.latencies, 50)
    }

    pub fn p99_ms(&self) -> Option<f64> {
        percentile(&self.latencies, 99)
    }
}

/// Sends every request of `workload` to `addr` from `concurrency` keep-alive connections,
/// each taking the next request when its previous one is answered.
pub async fn run(addr: SocketAddr, workload: &Workload, concurrency: usize) -> HttpRun {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (path, bodies, headers, next) = (
                workload.path.clone(),
                workload.bodies.clone(),
                workload.headers.clone(),
                next.clone(),
            );
            tokio::spawn(async move { worker(addr, &path, &bodies, &*headers, &next).await })
        })
        .collect();
    let mut report = WorkerReport::default();
    for worker in workers {
        let done = worker.await.expect("worker");
        report.latencies.extend(done.latencies);
        report.failed += done.failed;
        report.failed_requests.extend(done.failed_requests);
        report.samples.extend(done.samples);
    }
    let seconds = started.elapsed().as_secs_f64();
    report.latencies.sort_unstable();
    report.failed_requests.sort_unstable();
    HttpRun {
        requests: workload.bodies.len(),
        seconds,
        latencies: report.latencies,
        failed: report.failed,
        failed_requests: report.failed_requests,
        samples: report.samples,
    }
}

#[derive(Default)]
struct WorkerReport {
    latencies: Vec<Duration>,
    failed: usize,
    failed_requests: Vec<usize>,
    samples: Vec<String>,
}

/// One keep-alive connection taking the next request until none is left.
async fn worker(
    addr: SocketAddr,
    path: &str,
    bodies: &[Vec<u8>],
    headers: &HeadersFn,
    next: &AtomicUsize,
) -> WorkerReport {
    let mut connection = Connection::open(addr).await.ok();
    let mut report = WorkerReport::default();
    let mut request = Vec::new();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = bodies.get(index) else { break };
        let started = Instant::now();
        request.clear();
        request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        for (name, value) in headers(body) {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        let outcome = match &mut connection {
            Some(open) => open.exchange(&request).await,
            None => Err(io::Error::other("not connected")),
        };
        let outcome = match outcome {
            Ok(response) => {
                if !response.keep_alive {
                    connection = None;
                }
                if response.status == 200 {
                    Ok(())
                } else {
                    Err(format!(
                        "{} {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    ))
                }
            }
            Err(error) => {
                connection = None;
                Err(format!("request: {error}"))
            }
        };
        if connection.is_none() {
            connection = Connection::open(addr).await.ok();
        }
        report.latencies.push(started.elapsed());
        if let Err(error) = outcome {
            report.failed += 1;
            report.failed_requests.push(index);
            if report.samples.len() < 3 {
                report.samples.push(format!("request {index}: {error}"));
            }
        }
    }
    report
}

struct Response {
    status: u16,
    body: Vec<u8>,
    keep_alive: bool,
}

/// One HTTP/1.1 connection, used for one request at a time.
struct Connection {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(16 * 1024, stream),
            line: Vec::new(),
        })
    }

    /// The next line without its CRLF; an error at end of stream.
    async fn read_line(&mut self) -> io::Result<&[u8]> {
        self.line.clear();
        if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut end = self.line.len();
        while end > 0 && matches!(self.line[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        Ok(&self.line[..end])
    }

    /// Writes a whole request and reads its response.
    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.get_mut().write_all(request).await?;
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let status_line = self.read_line().await?;
        let status: u16 = status_line
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("not an HTTP/1.1 status line"))?;
        let (mut length, mut chunked, mut keep_alive) = (None, false, true);
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|byte| *byte == b':') else {
                return Err(invalid("malformed header"));
            };
            let name = &line[..colon];
            let value = String::from_utf8_lossy(&line[colon + 1..])
                .trim()
                .to_ascii_lowercase();
            if name.eq_ignore_ascii_case(b"content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid("bad content-length"))?,
                );
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value.contains("chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                keep_alive = !value.contains("close");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size_line = String::from_utf8_lossy(self.read_line().await?).into_owned();
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                self.stream.read_exact(&mut body[at..]).await?;
                self.read_line().await?;
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await?;
        } else if !(status < 200 || status == 204 || status == 304) {
            self.stream.read_to_end(&mut body).await?;
            keep_alive = false;
        }
        Ok(Response {
            status,
            body,
            keep_alive,
        })
    }
}
