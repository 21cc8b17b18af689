//! Test harness: a warden in-process on `127.0.0.1:0` in front of a mock upstream, with a
//! temporary data directory, plus helpers to create accounts and send requests. Tests
//! that need the real binary (signals, CLI) use [`binary`].
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use warden::app::App;
use warden::client::{AdminClient, HttpClient, Reply};
use warden::config::Config;
use warden::server::{self, Listeners};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const UPSTREAM_KEY: &str = "sk-test-upstream-secret";

pub struct Warden {
    pub proxy: SocketAddr,
    pub admin_addr: SocketAddr,
    pub app: Arc<App>,
    pub admin: AdminClient,
    pub http: HttpClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

/// Lines added to the sections of the test config.
#[derive(Default, Clone, Copy)]
pub struct Extra<'a> {
    pub server: &'a str,
    pub upstream: &'a str,
    pub audit: &'a str,
    /// Appended at the end (more sections, more tiers).
    pub tail: &'a str,
    /// Use this database file instead of one in the test's directory (replicas share it).
    pub db: Option<&'a std::path::Path>,
    /// Use this database URL (PostgreSQL) instead of a file.
    pub db_url: Option<&'a str>,
}

/// The config every test starts from.
pub fn config_text(upstream: &str, dir: &std::path::Path, extra: Extra<'_>) -> String {
    let Extra { server: server_extra, upstream: upstream_extra, audit: audit_extra, tail, db, db_url } = extra;
    let db = db.map(std::path::Path::to_path_buf).unwrap_or_else(|| dir.join("warden.db"));
    let storage = match db_url {
        Some(url) => format!("url = \"{url}\""),
        None => format!("path = \"{}\"", db.display()),
    };
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        admin_listen = "127.0.0.1:0"
        {server_extra}
        [upstream]
        base_url = "{upstream}"
        api_key_env = "T_UPSTREAM_KEY"
        {upstream_extra}
        [admin]
        token_env = "T_ADMIN_TOKEN"
        [storage]
        {storage}
        [logging]
        format = "pretty"
        level = "warn"
        [audit]
        dir = "{audit}"
        {audit_extra}
        [[tiers]]
        name = "default"
        requests_per_minute = 100000
        {tail}
        "#,
        audit = dir.join("audit").display(),
    )
}

pub fn test_env(name: &str) -> Option<String> {
    match name {
        "T_UPSTREAM_KEY" => Some(UPSTREAM_KEY.into()),
        "T_ADMIN_TOKEN" => Some(ADMIN_TOKEN.into()),
        _ => None,
    }
}

impl Warden {
    pub async fn start(upstream: &str) -> Warden {
        Warden::start_with(upstream, Extra::default()).await
    }

    pub async fn start_with(upstream: &str, extra: Extra<'_>) -> Warden {
        let dir = tempfile::tempdir().unwrap();
        Warden::start_in(upstream, extra, dir).await
    }

    /// Starts in an existing directory (e.g. one holding old audit files).
    pub async fn start_in(upstream: &str, extra: Extra<'_>, dir: tempfile::TempDir) -> Warden {
        let text = config_text(upstream, dir.path(), extra);
        let config = Config::from_toml(&text, &test_env).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let listeners = Listeners::bind(config.server.listen, config.server.admin_listen).await.unwrap();
        let (proxy, admin_addr) = (listeners.proxy_addr(), listeners.admin_addr());
        let app = Arc::new(App::build(config).await.unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(app.clone(), listeners, async {
            let _ = rx.await;
        }));
        Warden {
            proxy,
            admin_addr,
            app,
            admin: AdminClient::new(&format!("http://{admin_addr}"), ADMIN_TOKEN, "tester"),
            http: HttpClient::new(),
            stop: Some(tx),
            task: Some(task),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    /// Creates an account and one key; returns the raw key.
    pub async fn account(&self, id: &str) -> String {
        self.admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": id}))).await.unwrap();
        self.key(id).await
    }

    pub async fn key(&self, account: &str) -> String {
        let v = self.admin.expect(Method::POST, &format!("/admin/v1/accounts/{account}/keys"), None).await.unwrap();
        v["key"].as_str().unwrap().to_string()
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, path, key, Some(Bytes::from(body.to_string())), &[]).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let auth = format!("Bearer {key}");
        let mut h: Vec<(&str, &str)> = vec![("authorization", &auth), ("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.http.send(method, &self.url(path), &h, body).await.unwrap()
    }

    /// Usage totals of an account, from the admin API.
    pub async fn usage(&self, account: &str) -> Value {
        let v = self.admin.expect(Method::GET, &format!("/admin/v1/accounts/{account}"), None).await.unwrap();
        v["usage"].clone()
    }

    /// Waits until `f` holds (checked every 10 ms), for accounting that completes just
    /// after a response ends.
    pub async fn eventually<F: Fn(&Value) -> bool>(&self, account: &str, f: F) -> Value {
        for _ in 0..300 {
            let u = self.usage(account).await;
            if f(&u) {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition never held; last usage {}", self.usage(account).await);
    }

    /// Graceful shutdown (drains requests, flushes the audit log); returns the data
    /// directory so tests can read what warden left behind.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self.app.shutdown().await;
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }
}

/// Every record in an audit directory, in file order.
pub fn read_audit(dir: &std::path::Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn chat_body(prompt: &str, stream: bool) -> Value {
    json!({"model": "mock-small", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

/// Paths of the built binaries (cargo builds them for integration tests).
pub mod binary {
    pub fn warden() -> &'static str {
        env!("CARGO_BIN_EXE_warden")
    }
    pub fn mock() -> &'static str {
        env!("CARGO_BIN_EXE_warden-mock-llm")
    }
}

/// A streamed response being read frame by frame.
pub struct OpenStream {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: hyper::body::Incoming,
}

impl OpenStream {
    /// The next data frame, or `None` at the end.
    pub async fn next_data(&mut self) -> Option<Bytes> {
        use http_body_util::BodyExt;
        loop {
            match self.body.frame().await? {
                Ok(f) => {
                    if let Ok(d) = f.into_data() {
                        return Some(d);
                    }
                }
                Err(e) => panic!("stream error: {e}"),
            }
        }
    }

    /// Everything left, as text.
    pub async fn rest(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(d) = self.next_data().await {
            out.extend_from_slice(&d);
        }
        String::from_utf8(out).unwrap()
    }
}

/// Opens a request whose response body is read incrementally (a fresh connection).
pub async fn open_stream(url: &str, headers: &[(&str, &str)], body: Value) -> OpenStream {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(Method::POST).uri(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    OpenStream { status: parts.status, headers: parts.headers, body }
}

/// Running the real binaries as child processes.
pub mod process {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use serde_json::Value;

    use super::{binary, ADMIN_TOKEN, UPSTREAM_KEY};

    /// A child process killed when the test ends, whatever happens.
    pub struct Proc(pub Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Starts the mock upstream binary; returns it and its base URL.
    pub fn start_mock(extra: &[&str]) -> (Proc, String) {
        let mut child = Command::new(binary::mock())
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("mock prints its address").to_string();
        (Proc(child), url)
    }

    /// Starts `warden serve` on free ports; returns the process, proxy and admin addresses.
    pub fn start_warden(
        dir: &std::path::Path,
        upstream: &str,
        server_extra: &str,
        audit_extra: &str,
    ) -> (Proc, String, String) {
        start_warden_with(
            dir,
            upstream,
            super::Extra { server: server_extra, audit: audit_extra, ..Default::default() },
        )
    }

    /// Starts `warden serve` with any config additions.
    pub fn start_warden_with(dir: &std::path::Path, upstream: &str, extra: super::Extra<'_>) -> (Proc, String, String) {
        let config = dir.join("warden.toml");
        std::fs::write(
            &config,
            super::config_text(upstream, dir, extra)
                .replace("format = \"pretty\"", "format = \"json\"")
                .replace("level = \"warn\"", "level = \"info\""),
        )
        .unwrap();
        let mut child = Command::new(binary::warden())
            .args(["serve", "--config"])
            .arg(&config)
            .env("T_UPSTREAM_KEY", UPSTREAM_KEY)
            .env("T_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Every log line is kept in `dir/warden.log` (tests grep it for secrets).
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("warden.log")).unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if !sent && line.contains("warden listening") {
                    let v: Value = serde_json::from_str(&line).unwrap();
                    let _ =
                        tx.send((v["proxy"].as_str().unwrap().to_string(), v["admin"].as_str().unwrap().to_string()));
                    sent = true;
                }
            }
        });
        let (proxy, admin) = rx.recv_timeout(Duration::from_secs(20)).expect("warden did not start");
        (Proc(child), proxy, admin)
    }

    pub fn cli(admin: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(binary::warden())
            .args(args)
            .env("WARDEN_ADMIN_URL", format!("http://{admin}"))
            .env("WARDEN_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    pub fn send_signal(pid: u32, signal: &str) {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success();
        assert!(ok);
    }
}

/// A real `redis-server` on a free loopback port, stopped when dropped.
pub mod redis_server {
    use std::io::{Read, Write};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Redis {
        child: Option<Child>,
        pub port: u16,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    impl Redis {
        pub fn start() -> Redis {
            Redis::start_on(free_port())
        }

        pub fn start_on(port: u16) -> Redis {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test.sh installs it)");
            let r = Redis { child: Some(child), port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while !r.ping() {
                assert!(Instant::now() < deadline, "redis-server did not start on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
            r
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        pub fn ping(&self) -> bool {
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            if s.write_all(b"PING\r\n").is_err() {
                return false;
            }
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
        }

        /// Kills the server (SIGKILL) and waits for it to be gone.
        pub fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            self.kill();
        }
    }
}

/// A PostgreSQL server of the test's own: a fresh cluster in a temporary directory,
/// listening on a free loopback port, stopped (and deleted) on drop. Needs the server
/// binaries (Debian's `postgresql` package; `scripts/test.sh` installs it).
pub mod postgres_server {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Postgres {
        child: Option<Child>,
        pub port: u16,
        _dir: tempfile::TempDir,
    }

    /// The newest installed server's bin directory.
    fn bin_dir() -> std::path::PathBuf {
        let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL must be installed (scripts/test.sh installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("postgres").exists())
            .collect();
        versions.sort();
        versions.pop().expect("no PostgreSQL server binaries under /usr/lib/postgresql")
    }

    /// Runs a server binary; as root, as the `postgres` user (PostgreSQL refuses root).
    fn command(program: &std::path::Path) -> Command {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    impl Postgres {
        pub fn start() -> Postgres {
            let bin = bin_dir();
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let _ = Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status();
            let ok = command(&bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running initdb");
            assert!(ok.success(), "initdb failed");
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = command(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .arg("-k")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting postgres");
            let pg = Postgres { child: Some(child), port, _dir: dir };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ready = Command::new(bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-q"])
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    return pg;
                }
                assert!(Instant::now() < deadline, "postgres did not start on {port}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        pub fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }
    }

    impl Drop for Postgres {
        fn drop(&mut self) {
            if let Some(mut c) = self.child.take() {
                // Fast shutdown (SIGINT), so no server is left behind.
                let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if c.try_wait().ok().flatten().is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
