//! The real `warden` binary: config checking, the admin commands, graceful shutdown.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::process::{cli, send_signal, start_mock, start_warden};
use support::{binary, chat_body, open_stream};

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_example_config_validates() {
    let out = Command::new(binary::warden())
        .args(["check-config", "--config"])
        .arg(repo_file("config/warden.toml"))
        .env("UPSTREAM_API_KEY", "sk-x")
        .env("WARDEN_ADMIN_TOKEN", "t")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

/// The configs shipped in `deploy/` (the image's, docker-compose's and the one in the
/// Kubernetes ConfigMap) are valid with the environment the manifests give them.
#[test]
fn the_deploy_configs_validate() {
    let dir = tempfile::tempdir().unwrap();
    let configmap = std::fs::read_to_string(repo_file("deploy/kubernetes/configmap.yaml")).unwrap();
    // The ConfigMap's `warden.toml: |` block: every following line indented by 4.
    let embedded: String = configmap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("warden.toml: |"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(embedded.contains("[upstream]"), "no warden.toml in the ConfigMap");
    let from_configmap = dir.path().join("configmap.toml");
    std::fs::write(&from_configmap, embedded).unwrap();
    for path in [repo_file("deploy/warden.toml"), repo_file("deploy/compose.toml"), from_configmap] {
        let out = Command::new(binary::warden())
            .args(["check-config", "--config"])
            .arg(&path)
            .env("UPSTREAM_API_KEY", "sk-x")
            .env("WARDEN_ADMIN_TOKEN", "t")
            .env("WARDEN_DATABASE_URL", "postgres://warden:pw@db:5432/warden")
            .env("WARDEN_REDIS_URL", "redis://redis:6379/0")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stdout).contains(":pw@"), "a password was printed");
    }
}

#[test]
fn a_broken_config_lists_all_its_problems_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
        [server]
        listen = "not-an-address"
        typo_field = 1
        [upstream]
        base_url = "ftp://nowhere"
        api_key_env = "SURELY_UNSET_VARIABLE_123"
        [audit]
        capture = "everything"
        [[tiers]]
        name = "default"
        requests_per_minute = 0
        "#,
    )
    .unwrap();
    let out = Command::new(binary::warden())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("WARDEN_ADMIN_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "server: unknown key `typo_field`",
        "server.listen",
        "upstream.base_url",
        "SURELY_UNSET_VARIABLE_123",
        "audit.capture",
        "tiers[0].requests_per_minute",
        "6 problem(s)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_and_graceful_shutdown_with_a_stream_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, upstream) = start_mock(&[]);
    let (mut warden, proxy, admin) = start_warden(dir.path(), &upstream, "shutdown_grace_ms = 10000", "");

    let (ok, out, err) = cli(&admin, &["accounts", "create", "acme", "--tier", "default"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"acme\""));
    let (ok, out, err) = cli(&admin, &["keys", "create", "acme"]);
    assert!(ok, "{err}");
    let key = serde_json::from_str::<Value>(&out).unwrap()["key"].as_str().unwrap().to_string();
    let (ok, out, _) = cli(&admin, &["accounts", "list"]);
    assert!(ok && out.contains("acme") && out.contains("active"), "{out}");
    let (ok, _, err) = cli(&admin, &["accounts", "show", "nope"]);
    assert!(!ok && err.contains("404"), "{err}");

    // A slow stream: 20 chunks, 100 ms apart (~2 s).
    let auth = format!("Bearer {key}");
    let mut stream = open_stream(
        &format!("http://{proxy}/v1/chat/completions"),
        &[("authorization", &auth), ("x-mock-chunks", "20"), ("x-mock-chunk-interval-ms", "100")],
        chat_body("tell me a long story", true),
    )
    .await;
    assert_eq!(stream.status, 200);
    let first = String::from_utf8(stream.next_data().await.unwrap().to_vec()).unwrap();

    // SIGTERM while the stream is in flight.
    let sigterm_at = Instant::now();
    send_signal(warden.0.id(), "TERM");
    // New connections are refused soon after...
    let mut refused = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect(&proxy).is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "warden kept accepting connections after SIGTERM");
    // ...while the stream in flight runs to its end.
    let all = first + &stream.rest().await;
    assert!(all.ends_with("data: [DONE]\n\n"), "stream cut short: {all}");
    // The role chunk (empty content) and the 20 content chunks.
    assert_eq!(all.matches("\"content\":\"").count(), 21, "{all}");
    let status = tokio::task::spawn_blocking(move || warden.0.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(sigterm_at.elapsed() < Duration::from_secs(8));
}

/// Hot reload: SIGHUP (or `POST /admin/v1/config/reload`) re-reads the file; new tier
/// limits apply to the next requests, settings that need a restart are reported and keep
/// their running values, and an invalid file changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_the_admin_api_reload_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let (_mock, upstream) = start_mock(&[]);
    let (warden, proxy, admin) = start_warden(dir.path(), &upstream, "", "");
    let (ok, _, err) = cli(&admin, &["accounts", "create", "acme", "--tier", "default"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&admin, &["keys", "create", "acme"]);
    let key = serde_json::from_str::<Value>(&out).unwrap()["key"].as_str().unwrap().to_string();
    let http = warden::client::HttpClient::new();
    let send = || {
        let (http, proxy, key) = (&http, &proxy, &key);
        async move {
            let body = bytes::Bytes::from(chat_body("hi", false).to_string());
            let auth = format!("Bearer {key}");
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            let url = format!("http://{proxy}/v1/chat/completions");
            http.send(http::Method::POST, &url, &headers, Some(body)).await.unwrap().status.as_u16()
        }
    };
    for _ in 0..10 {
        assert_eq!(send().await, 200);
    }

    // Two requests a minute from now on, and a new listen address (needs a restart).
    let path = dir.path().join("warden.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let tightened = text.replace("requests_per_minute = 100000", "requests_per_minute = 2");
    assert_ne!(tightened, text);
    std::fs::write(&path, tightened.replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1)).unwrap();
    send_signal(warden.0.id(), "HUP");
    let log = dir.path().join("warden.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("SIGHUP: configuration reloaded")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no reload logged:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("tiers") && line.contains("server.listen"), "{line}");
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(send().await);
        }
        v
    };
    assert!(statuses.contains(&429), "the new limit did not apply: {statuses:?}");
    // Still serving on the old address: listeners need a restart.
    assert!(std::net::TcpStream::connect(&proxy).is_ok());

    // An invalid file through the admin API: refused with every problem, nothing changes.
    std::fs::write(&path, format!("{tightened}\n[bogus]\nx = 1\n")).unwrap();
    let client = warden::client::AdminClient::new(&format!("http://{admin}"), support::ADMIN_TOKEN, "ops");
    let err = client.expect(http::Method::POST, "/admin/v1/config/reload", None).await.unwrap_err().to_string();
    assert!(err.contains("400") && err.contains("unknown") && err.contains("bogus"), "{err}");
    assert_eq!(send().await, 429, "the running config stays");

    // Back to the generous tier through the API; the reload is recorded with its actor.
    std::fs::write(&path, &text).unwrap();
    let report = client.expect(http::Method::POST, "/admin/v1/config/reload", None).await.unwrap();
    assert_eq!(report["applied"], serde_json::json!(["tiers"]), "{report}");
    // (acme's limiter state stays what the tight limit left: a fresh account shows the
    // generous limit is back.)
    let (ok, _, err) = cli(&admin, &["accounts", "create", "fresh", "--tier", "default"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&admin, &["keys", "create", "fresh"]);
    let fresh = serde_json::from_str::<Value>(&out).unwrap()["key"].as_str().unwrap().to_string();
    for _ in 0..5 {
        let body = bytes::Bytes::from(chat_body("hi", false).to_string());
        let auth = format!("Bearer {fresh}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let url = format!("http://{proxy}/v1/chat/completions");
        assert_eq!(http.send(http::Method::POST, &url, &headers, Some(body)).await.unwrap().status, 200);
    }
}
