//! `golek doctor` on this machine: it passes (or warns, with reasons), fails naming the key and
//! the port when the HTTP port is taken, checks a cluster certificate's expiry and fails on a
//! seed that does not answer; `golek --version` names the commit.

use std::process::Command;

const GOLEK: &str = env!("CARGO_BIN_EXE_golek");

fn doctor(args: &[&str]) -> (bool, String) {
    let out = Command::new(GOLEK)
        .arg("doctor")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn doctor_passes_here_and_fails_on_a_taken_port() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let (ok, text) = doctor(&["--data-dir", dir, "--http-addr", &addr]);
    assert!(ok, "{text}");
    for check in [
        "cpu",
        "memory",
        "gpus",
        "data dir",
        "http port",
        "model files",
        "clock",
    ] {
        let line = text
            .lines()
            .find(|l| l[4..].trim_start().starts_with(check))
            .unwrap_or_else(|| panic!("no {check} check: {text}"));
        assert!(line.starts_with("ok") || line.starts_with("warn"), "{line}");
        // A warning says what it found and what to do.
        assert!(line.len() > 20, "{line}");
    }

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, text) = doctor(&["--data-dir", dir, "--http-addr", &addr]);
    assert!(!ok, "{text}");
    let line = text.lines().find(|l| l.starts_with("FAIL")).expect(&text);
    assert!(
        line.contains("http port") && line.contains(&addr) && line.contains("http.addr"),
        "{line}"
    );
    assert!(text.contains("1 of"), "{text}");
}

#[test]
fn doctor_checks_the_certificate_and_the_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let tls = dir.path().join("tls");
    let golek = |args: &[&str]| {
        let out = Command::new(GOLEK).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    golek(&["cluster", "init", ca.to_str().unwrap()]);
    golek(&[
        "cluster",
        "issue",
        ca.to_str().unwrap(),
        "--node-id",
        "doc",
        "--out",
        tls.to_str().unwrap(),
    ]);
    // A seed where nothing listens.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let seed = silent.local_addr().unwrap().to_string();
    drop(silent);
    let data = dir.path().join("data");
    let (ok, text) = doctor(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--tls-dir",
        tls.to_str().unwrap(),
        "--node-id",
        "doc",
        "--quic-addr",
        "127.0.0.1:0",
        "--seed",
        &seed,
    ]);
    assert!(!ok, "{text}");
    let cert = text
        .lines()
        .find(|l| l.contains("certificate"))
        .expect(&text);
    assert!(
        cert.starts_with("ok") && cert.contains("more days"),
        "{cert}"
    );
    let seed_line = text.lines().find(|l| l.contains(&seed)).expect(&text);
    assert!(seed_line.starts_with("FAIL"), "{seed_line}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("quic port")),
        "{text}"
    );
}

#[test]
fn the_version_names_the_commit() {
    let out = Command::new(GOLEK).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.starts_with(&format!("golek {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let commit = text.split("(commit ").nth(1).expect(&text);
    assert!(
        commit.trim_end().ends_with(')') && commit.len() > 2,
        "{text}"
    );
}
