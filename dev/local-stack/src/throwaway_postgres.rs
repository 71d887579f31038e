//! A private PostgreSQL cluster for one run of the local stack, so a newcomer needs no
//! database set up: `initdb` into a temporary directory, start on a free loopback port with
//! its socket inside that directory, stop and delete it on exit.
//!
//! The server binaries come from the machine's PostgreSQL packages; when they are missing and
//! we are root on a Debian-like system, the `postgresql` package is installed. PostgreSQL
//! refuses to run as root, so as root the cluster runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct ThrowawayPostgres {
    directory: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as_postgres: bool,
    running: bool,
}

impl ThrowawayPostgres {
    pub async fn start() -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(Self::start_blocking).await?
    }

    fn start_blocking() -> anyhow::Result<Self> {
        let bin = server_binaries()?;
        let run_as_postgres = is_root();
        let directory =
            std::env::temp_dir().join(format!("growth-agents-pg-{}", std::process::id()));
        if directory.exists() {
            std::fs::remove_dir_all(&directory)
                .with_context(|| format!("remove stale {}", directory.display()))?;
        }
        std::fs::create_dir_all(&directory)?;
        let mut cluster = Self {
            directory,
            bin,
            port: free_port()?,
            run_as_postgres,
            running: false,
        };
        if run_as_postgres {
            run(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&cluster.directory),
                "chown the data directory",
            )?;
        }
        let data = cluster.data_dir();
        run(
            cluster
                .command(
                    "initdb",
                    &[
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--no-instructions",
                        "-D",
                    ],
                )
                .arg(&data),
            "initdb",
        )?;
        let server_options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=100",
            cluster.port,
            cluster.directory.display()
        );
        let log = cluster.directory.join("postgres.log");
        run(
            cluster
                .command("pg_ctl", &["-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &server_options, "start"]),
            "pg_ctl start",
        )?;
        cluster.running = true;
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn data_dir(&self) -> PathBuf {
        self.directory.join("data")
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args);
        command
    }

    fn stop_blocking(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self
                .command("pg_ctl", &["-w", "-m", "fast", "-D"])
                .arg(&data)
                .arg("stop")
                .output();
            self.running = false;
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }

    pub async fn stop(mut self) {
        let _ = tokio::task::spawn_blocking(move || self.stop_blocking()).await;
    }
}

impl Drop for ThrowawayPostgres {
    /// A panic or early return must not leave a server running.
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("{what}: could not run"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The newest installed server's `bin` directory, installing PostgreSQL if we can.
fn server_binaries() -> anyhow::Result<PathBuf> {
    if let Some(bin) = find_server_binaries() {
        return Ok(bin);
    }
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!(
            "PostgreSQL server binaries not found; installing the distribution's postgresql package…"
        );
        run(
            Command::new("apt-get").arg("update").arg("-qq"),
            "apt-get update",
        )?;
        run(
            Command::new("apt-get").args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "postgresql",
            ]),
            "apt-get install postgresql",
        )?;
        if let Some(bin) = find_server_binaries() {
            return Ok(bin);
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL or set DATABASE_URL"
    )
}

fn find_server_binaries() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("PG_BINDIR") {
        return Some(PathBuf::from(bin));
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin)
}
