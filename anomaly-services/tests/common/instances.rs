//! Redis and PostgreSQL servers of a test's own, on spare loopback ports, that the test may
//! crash and restart (the machine's shared servers are never touched). Data survives a
//! restart, as in production: Redis appends every write to its log before answering,
//! PostgreSQL recovers from its WAL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, unique};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis server of the test's own.
pub struct OwnRedis {
    port: u16,
    dir: Scratch,
    server: Option<Child>,
}

impl OwnRedis {
    /// Starts one on a spare port.
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: Scratch::new("redis"),
            server: None,
        };
        redis.run();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection, for setting up and inspecting keys.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap()
    }

    /// Kills it without warning (SIGKILL).
    pub fn crash(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill().unwrap();
            server.wait().unwrap();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.crash();
        self.run();
    }

    fn run(&mut self) {
        let server = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        self.server = Some(server);
        let url = self.url();
        wait_for("redis-server", || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A PostgreSQL cluster of the test's own (trust authentication, user `postgres`).
pub struct OwnPostgres {
    port: u16,
    bin: PathBuf,
    dir: Scratch,
    server: Option<Child>,
}

impl OwnPostgres {
    /// Creates a cluster and starts it on a spare port.
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = Scratch::new("postgres");
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            // PostgreSQL refuses to run as root.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.0)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let status = as_postgres_user(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let mut postgres = Self {
            port: free_port(),
            bin,
            dir,
            server: None,
        };
        postgres.run();
        postgres
    }

    /// `postgresql://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Crashes it: SIGQUIT, PostgreSQL's immediate shutdown (no checkpoint; every session
    /// is cut; the next start recovers from the WAL).
    pub fn crash(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &server.id().to_string()])
                .status();
            server.wait().unwrap();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.crash();
        self.run();
    }

    fn run(&mut self) {
        let data = self.dir.0.join("data");
        let server = as_postgres_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.0.display()))
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(server);
        let url = self.url();
        wait_for("postgres", || {
            postgres::Client::connect(&url, postgres::NoTls).is_ok()
        });
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.crash();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program`, run as the `postgres` user when the tests run as root (`setpriv` executes it in
/// place, so the child is the server itself and signals reach it).
fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Where `initdb` and `postgres` are: the newest /usr/lib/postgresql/<version>/bin, or the
/// directory of `pg_config --bindir`.
fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = versions.pop() {
        return bin;
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL's server binaries (initdb, postgres)");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}
