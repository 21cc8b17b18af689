//! A newcomer's first hour, on the real binaries: the README's "Running it" commands run
//! as pasted, the commands `warden demo --keep-running` prints, a config with no tier,
//! and a listener that cannot bind.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::binary;

fn repo_file(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The directory holding both binaries, as `cargo install` puts them on PATH.
fn path_with_binaries() -> String {
    let bin = Path::new(binary::warden()).parent().unwrap().to_path_buf();
    assert!(bin.join("warden-mock-llm").is_file(), "the mock is built beside warden");
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())))
        .unwrap()
        .into_string()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shell blocks (```sh) of one README section, in order.
fn readme_blocks(section: &str) -> String {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let body = readme
        .split(&format!("\n## {section}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has no `## {section}` section"))
        .split("\n## ")
        .next()
        .unwrap();
    let (mut script, mut inside) = (String::new(), false);
    for line in body.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim() == "```sh";
            continue;
        }
        if inside {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
}

/// Runs a bash script to its end (at most `limit`), returning status, stdout and stderr.
fn run_bash(script: &str, dir: &Path, path: &str, admin_url: Option<&str>, limit: Duration) -> (bool, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("WARDEN_ADMIN_URL")
        .env_remove("WARDEN_ADMIN_TOKEN")
        .env_remove("RUST_LOG");
    if let Some(url) = admin_url {
        cmd.env("WARDEN_ADMIN_URL", url);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let (o, e) = (o.join().unwrap(), e.join().unwrap());
            panic!("script still running after {limit:?}\n--- stdout\n{o}\n--- stderr\n{e}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), o.join().unwrap(), e.join().unwrap())
}

#[test]
fn the_readme_running_it_commands_work_as_pasted() {
    let script = readme_blocks("Running it");
    for needed in ["warden-mock-llm", "warden check-config", "warden serve", "warden keys create", "curl"] {
        assert!(script.contains(needed), "Running it should show `{needed}`:\n{script}");
    }
    // The example's fixed ports, swapped for free ones (nothing else is changed).
    let ports = [free_port(), free_port(), free_port()];
    let swap = |t: &str| {
        t.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", ports[0]))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", ports[1]))
            .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", ports[2]))
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let config = std::fs::read_to_string(repo_file("config/warden.toml")).unwrap();
    std::fs::write(dir.path().join("config/warden.toml"), swap(&config)).unwrap();
    // After the README's commands: the blocked account's next request is refused.
    let checks = r#"
echo "status after block: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/v1/chat/completions \
  -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"model":"mock-small","messages":[{"role":"user","content":"hi"}]}')"
"#;
    let full = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT\n{}\n{}",
        swap(&script),
        swap(checks)
    );
    // The CLI's default admin URL is the example's admin port: it moves with it.
    let admin_url = format!("http://127.0.0.1:{}", ports[1]);
    let (ok, out, err) = run_bash(&full, dir.path(), &path_with_binaries(), Some(&admin_url), Duration::from_secs(120));
    assert!(ok, "the README's commands failed\n--- script\n{full}\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(out.contains("config/warden.toml: ok"), "{out}");
    assert!(out.contains("\"choices\""), "the curl got an answer: {out}");
    assert!(out.contains("\"status\": \"blocked\""), "the account was blocked: {out}");
    assert!(out.contains("status after block: 403"), "{out}");
    // warden said where its data goes, as absolute paths in the directory it ran in.
    let data = std::fs::canonicalize(dir.path()).unwrap().join("data");
    assert!(out.contains(&data.join("warden.db").display().to_string()), "data path announced: {out}");
    assert!(out.contains(&data.join("audit").display().to_string()), "audit path announced: {out}");
    assert!(data.join("warden.db").is_file() && data.join("audit").is_dir());
}

#[test]
fn the_demo_prints_commands_that_work_while_it_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(binary::warden())
        .args(["demo", "--keep-running"])
        .current_dir(dir.path())
        .env("PATH", path_with_binaries())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut printed = Vec::new();
    let mut block = Vec::new();
    let start = Instant::now();
    let mut inside = false;
    for line in lines.by_ref() {
        assert!(start.elapsed() < Duration::from_secs(300), "the demo took too long");
        printed.push(line.clone());
        match line.trim() {
            "---- ready commands ----" => inside = true,
            "---- end ----" => break,
            _ if inside => block.push(line),
            _ => {}
        }
    }
    let text = printed.join("\n");
    assert!(!block.is_empty(), "no ready commands printed:\n{text}");
    // Aligned tables and explained columns, and no hint that cannot work.
    assert!(text.contains("tokens: prompt/completion"), "{text}");
    // The Messages API with thinking: kept on the default tier, stripped on `no-reasoning`,
    // streamed and not.
    let messages: Vec<&str> = text.lines().filter(|l| l.contains("/v1/messages")).collect();
    assert_eq!(messages.len(), 4, "{text}");
    assert!(messages.iter().filter(|l| l.contains("acme-chat")).all(|l| l.contains("thinking + text")), "{text}");
    assert!(messages.iter().filter(|l| l.contains("lite-app")).all(|l| l.contains("thinking stripped")), "{text}");
    assert!(!text.contains("(counted)"), "{text}");
    assert!(!text.contains("link below"), "{text}");
    let totals: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("per-account totals"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.contains("still running"))
        .collect();
    assert!(totals.len() > 10, "{text}");
    let column = |l: &str| l.find("active").or_else(|| l.find("blocked")).or_else(|| l.find("throttled"));
    let header_col = totals[0].find("status").unwrap();
    for row in &totals[1..] {
        assert_eq!(column(row), Some(header_col), "status column aligned in {row:?}\n{}", totals.join("\n"));
    }
    // Where the simulated accounts ended up: the translation product (a fixed persona,
    // outputs as long as its inputs, at volume) is left alone, the round robin over a
    // proxy pool is caught as a cluster, and every member of the paraphrased hydra
    // (`para-*`: no shared template, own network each) is caught, alone or as a cluster.
    let ended: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.contains("where each simulated account ended up"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with('('))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |id: &str| ended.iter().find(|r| r[0] == id).unwrap_or_else(|| panic!("no row for {id}:\n{text}"));
    assert_eq!(row("lingua")[5], "active", "the translation product is not flagged:\n{text}");
    assert!(
        ended.iter().any(|r| r[0].starts_with("rr-") && r[7] == "cluster"),
        "a round-robin account is in a coordinated_cluster alert:\n{text}"
    );
    let para: Vec<&Vec<&str>> = ended.iter().filter(|r| r[0].starts_with("para-")).collect();
    assert_eq!(para.len(), 10, "{text}");
    for r in para {
        assert!(r[7] == "own" || r[7] == "cluster", "the paraphrased hydra's {} is caught:\n{text}", r[0]);
    }
    // The printed commands, run as a shell script, all succeed.
    let script = format!("set -euo pipefail\n{}", block.join("\n"));
    let (ok, out, err) = run_bash(&script, dir.path(), &path_with_binaries(), None, Duration::from_secs(60));
    assert!(ok, "the demo's commands failed\n--- script\n{script}\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(block.iter().any(|l| l.starts_with("warden alerts list")), "PATH's warden is this one: {block:?}");
    assert!(out.contains("coordinated_cluster") && out.contains("distill-co"), "alerts list: {out}");
    assert!(out.contains("\"evidence\""), "alerts show: {out}");
    assert!(out.contains("\"id\": \"distill-co\""), "{out}");
    assert!(out.contains("\"choices\""), "the demo key works: {out}");
    assert!(out.contains("warden_"), "metrics: {out}");
    // Ctrl-C stops it cleanly and removes its data.
    let data_dir = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("data directory").map(|r| r.split_whitespace().next().unwrap().to_string()))
        .unwrap();
    assert!(Path::new(&data_dir).is_dir());
    support::process::send_signal(demo.id(), "INT");
    let rest: Vec<String> = lines.collect();
    assert!(demo.wait().unwrap().success());
    assert!(rest.iter().any(|l| l.contains("demo finished")), "{rest:?}");
    assert!(!Path::new(&data_dir).exists(), "the demo's data is deleted");
}

#[test]
fn without_keep_running_the_demo_gives_no_hints_that_cannot_work() {
    // Only the start of the output matters here: the demo is stopped once it has printed
    // its header.
    let mut demo = Command::new(binary::warden()).arg("demo").stdout(Stdio::piped()).spawn().unwrap();
    let header: Vec<String> = BufReader::new(demo.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("created account"))
        .collect();
    let _ = demo.kill();
    let _ = demo.wait();
    let text = header.join("\n");
    assert!(!text.contains("dashboard"), "no dashboard link for a demo that will be gone: {text}");
    assert!(text.contains("--keep-running"), "says how to keep it up: {text}");
}

#[test]
fn a_config_without_tiers_serves_with_the_default_tier_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("minimal.toml");
    std::fs::copy(repo_file("config/minimal.toml"), &config).unwrap();
    let out = Command::new(binary::warden())
        .args(["check-config", "--config"])
        .arg(&config)
        .env("UPSTREAM_API_KEY", "sk-x")
        .env("WARDEN_ADMIN_TOKEN", "t")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 tier(s)"), "{stdout}");
    assert!(!stdout.contains("unlimited"), "the default tier is limited: {stdout}");
    assert!(
        stdout.contains(&format!("{}", std::fs::canonicalize(dir.path()).unwrap().join("data/warden.db").display()))
    );
}

#[test]
fn a_listener_that_cannot_bind_is_named_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:{port}\"\n\
             [upstream]\nbase_url = \"http://127.0.0.1:9\"\n[admin]\ntoken_env = \"T\"\n\
             [storage]\npath = \"{d}/w.db\"\n[audit]\ndir = \"{d}/audit\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(binary::warden()).args(["serve", "--config"]).arg(&config).env("T", "t").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("admin listener (server.admin_listen) 127.0.0.1:{port}")),
        "the error names the listener: {stderr}"
    );
    drop(taken);
}
