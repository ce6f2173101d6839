//! Throwaway PostgreSQL clusters for the tests, from the installed binaries: `initdb` on a
//! temporary directory, `postgres` on a Unix socket there (no TCP port, trust authentication).
//! As root (CI, these machines), both run as the unprivileged `postgres` user that Debian's
//! package creates, since `initdb` refuses root.
//!
//! - [`database`]: a fresh database in the cluster this test binary shares. The cluster runs
//!   under a small shell that stops it and deletes its directory when this process exits (its
//!   standard input closes), so nothing outlives the tests.
//! - [`Cluster::start`]: a cluster of its own, with `postgres` as this process's direct child, for
//!   tests that kill the server and start it again.
//!
//! Where PostgreSQL is not installed the tests skip with one line; `TREECAST_REQUIRE_POSTGRES=1`
//! (set by `.ci/run`) turns that into a failure.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The socket "port": only names the socket file, as the cluster listens on no TCP port.
const PORT: u16 = 5432;

/// A directory of the PostgreSQL binaries, if installed.
fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

/// The uid and gid to run the server as: `postgres` when we are root, else ourselves.
fn identity() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").ok()?;
    if me.uid() != 0 {
        return Some((me.uid(), me.gid()));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Whether the tests must have PostgreSQL (`.ci/run` sets it).
fn required() -> bool {
    std::env::var_os("TREECAST_REQUIRE_POSTGRES").is_some_and(|v| v == "1")
}

/// The binaries and the identity to run them as, or `None` after one line saying why the test
/// skips (a panic where PostgreSQL is required).
pub(crate) fn available() -> Option<(PathBuf, (u32, u32))> {
    match (bin_dir(), identity()) {
        (Some(bin), Some(id)) => Some((bin, id)),
        _ => {
            assert!(
                !required(),
                "TREECAST_REQUIRE_POSTGRES=1 but PostgreSQL (initdb, postgres, a postgres user) is not installed"
            );
            eprintln!("PostgreSQL is not installed: this test is skipped");
            None
        }
    }
}

/// A new directory owned by the server's user.
fn server_dir(tag: &str, (uid, gid): (u32, u32)) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "treecast-pg-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    dir
}

fn init(bin: &Path, dir: &Path, (uid, gid): (u32, u32)) {
    let out = Command::new(bin.join("initdb"))
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(dir.join("data"))
        .uid(uid)
        .gid(gid)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn server_args(dir: &Path) -> Vec<String> {
    vec![
        "-D".into(),
        dir.join("data").display().to_string(),
        "-k".into(),
        dir.display().to_string(),
        "-p".into(),
        PORT.to_string(),
        "-c".into(),
        "listen_addresses=".into(),
        "-c".into(),
        "max_connections=200".into(),
    ]
}

/// The `key=value` connection string of database `db` in the cluster at `dir`.
pub(crate) fn conninfo(dir: &Path, db: &str) -> String {
    format!(
        "host={} port={PORT} user=postgres dbname={db}",
        dir.display()
    )
}

/// The same as a `postgres://` URL (the socket directory percent-encoded as the host).
pub(crate) fn url(dir: &Path, db: &str) -> String {
    let host: String = dir
        .display()
        .to_string()
        .bytes()
        .map(|b| match b {
            b'/' => "%2F".to_string(),
            b => char::from(b).to_string(),
        })
        .collect();
    format!("postgres://postgres@{host}:{PORT}/{db}")
}

/// Waits until the server at `dir` accepts connections.
fn wait_ready(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if postgres::Client::connect(&conninfo(dir, "postgres"), postgres::NoTls).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Shared {
    dir: PathBuf,
    /// Closing it (at exit) stops the server.
    _stdin: Mutex<ChildStdin>,
    /// The shell: it waits for the server itself, and ends with it.
    _shell: Mutex<Child>,
}

/// A fresh database in this test binary's shared cluster: its `key=value` connection string
/// and its `postgres://` URL; `None` (after one line) where PostgreSQL is not installed.
pub(crate) fn database() -> Option<(String, String)> {
    static SHARED: OnceLock<Option<Shared>> = OnceLock::new();
    static N: AtomicU32 = AtomicU32::new(0);
    let shared = SHARED.get_or_init(|| {
        let (bin, id) = available()?;
        let dir = server_dir("shared", id);
        init(&bin, &dir, id);
        // The shell stops the server and removes its files once our end of the pipe closes.
        let script = r#"postgres="$1"; dir="$2"; shift 2
"$postgres" "$@" >"$dir/log" 2>&1 &
pid=$!
read _
kill -INT "$pid"
wait "$pid"
rm -rf "$dir""#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(bin.join("postgres"))
            .arg(&dir)
            .args(server_args(&dir))
            .uid(id.0)
            .gid(id.1)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        wait_ready(&dir);
        Some(Shared {
            dir,
            _stdin: Mutex::new(stdin),
            _shell: Mutex::new(child),
        })
    });
    let shared = shared.as_ref()?;
    let db = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let mut admin =
        postgres::Client::connect(&conninfo(&shared.dir, "postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    Some((conninfo(&shared.dir, &db), url(&shared.dir, &db)))
}

/// A cluster of its own, whose server is this process's child: it can be killed and started
/// again. Stopped (and its files removed) when dropped.
pub(crate) struct Cluster {
    bin: PathBuf,
    id: (u32, u32),
    pub(crate) dir: PathBuf,
    server: Option<Child>,
}

impl Cluster {
    /// A new cluster with a running server, or `None` where PostgreSQL is not installed.
    pub(crate) fn start() -> Option<Self> {
        let (bin, id) = available()?;
        let dir = server_dir("own", id);
        init(&bin, &dir, id);
        let mut cluster = Self {
            bin,
            id,
            dir,
            server: None,
        };
        cluster.run();
        Some(cluster)
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut child = Command::new(self.bin.join("postgres"))
                .args(server_args(&self.dir))
                .uid(self.id.0)
                .gid(self.id.1)
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .unwrap();
            // A restart right after a SIGKILL can find the old backends still holding the
            // shared memory: the new postmaster exits at once, and we try again.
            std::thread::sleep(Duration::from_millis(200));
            match child.try_wait().unwrap() {
                None => {
                    self.server = Some(child);
                    break;
                }
                Some(_) => assert!(Instant::now() < deadline, "PostgreSQL did not restart"),
            }
        }
        wait_ready(&self.dir);
    }

    /// SIGKILLs the server (the postmaster) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            let backends = children_of(s.id());
            let _ = s.kill();
            let _ = s.wait();
            // A backend outlives its postmaster for a moment and would still answer a query on
            // its connection: killed too, and waited for (it stays a zombie here, where nothing
            // reaps orphans, but serves nothing).
            for pid in &backends {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while backends.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts the server again after [`Cluster::kill`].
    pub(crate) fn restart(&mut self) {
        self.run();
    }

    /// A new database: its `key=value` connection string and its URL.
    pub(crate) fn database(&self, name: &str) -> (String, String) {
        let mut admin =
            postgres::Client::connect(&conninfo(&self.dir, "postgres"), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        (conninfo(&self.dir, name), url(&self.dir, name))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            // SIGTERM: a smart shutdown would wait for clients; SIGINT is the fast one, but
            // `Child` sends only SIGKILL, which is fine for a throwaway cluster.
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes whose parent is `pid` (Linux `/proc`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The state and the parent of `pid`, from `/proc/PID/stat` (after the command's closing
/// parenthesis: state, then parent).
fn stat_fields(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let parent = rest.next()?.parse().ok()?;
    Some((state, parent))
}
