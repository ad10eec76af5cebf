//! The .deb in a fresh Debian root: `scripts/package-deb.sh` packages this build's binary with
//! the default models, `debootstrap` makes a minimal root of this machine's Debian release,
//! apt installs the package there (its Depends resolved from the archive), and the test checks
//! the user and state folder the postinst made, `systemd-analyze verify` on the installed unit,
//! `golek --version` and `golek doctor`, then runs the unit's ExecStart as the service user:
//! `/readyz` answers 200 and the default chat model answers a question. SIGTERM ends it with
//! exit 0; an edited /etc/golek/node.toml survives a reinstall, and removing the package leaves
//! the node's state in place.
//!
//! Needs root (chroot, mount) and the Debian archive (setup.sh --tests installs debootstrap).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const GOLEK: &str = env!("CARGO_BIN_EXE_golek");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// Runs a command to success and returns its stdout; panics with its output otherwise.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A debootstrapped root with /proc mounted; unmounted and deleted on drop.
struct DebianRoot {
    dir: tempfile::TempDir,
}

impl DebianRoot {
    fn create() -> DebianRoot {
        let os = std::fs::read_to_string("/etc/os-release").unwrap();
        let suite = os
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .expect("VERSION_CODENAME in /etc/os-release")
            .trim_matches('"')
            .to_string();
        let mirror = std::env::var("GOLEK_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        // The downloaded base packages are kept between runs.
        let cache = golek_config::default_assets_dir().join("cache/debootstrap");
        std::fs::create_dir_all(&cache).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("golek-debroot")
            .tempdir()
            .unwrap();
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--cache-dir"])
            .arg(&cache)
            .arg(&suite)
            .arg(dir.path())
            .arg(&mirror));
        std::fs::copy("/etc/resolv.conf", dir.path().join("etc/resolv.conf")).unwrap();
        run(Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(dir.path().join("proc")));
        DebianRoot { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn chroot(&self, args: &[&str]) -> Command {
        self.chroot_as(None, args)
    }

    /// `args` in the root, as `user` (`USER:GROUP`) when given.
    fn chroot_as(&self, user: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new("chroot");
        if let Some(user) = user {
            cmd.arg(format!("--userspec={user}"));
        }
        cmd.arg(self.path())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C.UTF-8");
        cmd
    }

    fn apt(&self, args: &[&str]) -> String {
        let mut all = vec!["apt-get", "-y", "-q", "--no-install-recommends"];
        all.extend_from_slice(args);
        run(&mut self.chroot(&all))
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.path().join("proc"))
            .status();
    }
}

/// POSTs `body` as JSON and reads the answer as JSON.
async fn post_json(client: &reqwest::Client, url: String, body: &Value) -> Value {
    let response = client.post(url).json(body).send().await.unwrap();
    response.json().await.unwrap()
}

/// The unit's ExecStart, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart in golek.service");
    line.split_whitespace().map(str::to_string).collect()
}

async fn wait_ready(client: &reqwest::Client, base: &str, node: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(Some(status)) = node.try_wait() {
            panic!("the installed node exited early: {status}");
        }
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "/readyz never answered 200");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn build_package(out: &Path) -> PathBuf {
    let printed = run(Command::new("bash")
        .arg(repo().join("scripts/package-deb.sh"))
        .args(["--binary", GOLEK, "--fast", "--out"])
        .arg(out)
        .env("GOLEK_NODE__ASSETS_DIR", golek_config::default_assets_dir()));
    PathBuf::from(printed.trim())
}

#[tokio::test]
async fn the_package_installs_into_a_fresh_debian_root_and_serves_the_default_models() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the package test needs root (debootstrap, chroot, mount)"
    );
    let out = tempfile::tempdir().unwrap();
    let deb = build_package(out.path());
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    eprintln!("{info}");
    for needed in ["Depends: adduser", "libgomp1", "libstdc++6", "libc6"] {
        assert!(
            info.contains(needed),
            "no {needed} in the control file:\n{info}"
        );
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/golek/node.toml");

    let root = DebianRoot::create();
    std::fs::copy(&deb, root.path().join("tmp/golek.deb")).unwrap();
    root.apt(&["update", "-qq"]);
    // systemd and procps as on a real machine: the unit is verified against what it names.
    root.apt(&["install", "/tmp/golek.deb", "systemd", "procps"]);

    // What the postinst made: the system user and its state folder.
    let id = run(&mut root.chroot(&["id", "-u", "golek"]));
    let uid: u32 = id.trim().parse().unwrap();
    assert!(uid < 1000, "golek is a system user: uid {uid}");
    let state = root.path().join("var/lib/golek");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), uid);
    let unit_path = root.path().join("lib/systemd/system/golek.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for key in [
        "User=golek",
        "StateDirectory=golek",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ] {
        assert!(unit.lines().any(|l| l == key), "no {key} in the unit");
    }
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg("golek.service"));

    let version = run(&mut root.chroot(&["golek", "--version"]));
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")) && version.contains('('),
        "{version}"
    );

    // The service's own command, as the service user, on free ports (the host shares the
    // network with the root).
    let addr = format!("127.0.0.1:{}", golek_cluster_tests::free_tcp_port());
    let words = exec_start(&unit);
    let service = Some("golek:golek");
    let mut doctor = root.chroot_as(service, &["/usr/bin/golek", "doctor"]);
    doctor.args(&words[2..]).env("GOLEK_HTTP__ADDR", &addr);
    let report = run(&mut doctor);
    eprintln!("golek doctor in the root:\n{report}");
    assert!(report.contains("model files"), "{report}");

    let argv: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut node = root
        .chroot_as(service, &argv)
        .env("HOME", "/var/lib/golek")
        .env("GOLEK_HTTP__ADDR", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base, &mut node).await;
    let body = json!({"model": "smollm2-135m-instruct", "max_tokens": 32, "temperature": 0,
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    let answer = post_json(&client, format!("{base}/v1/chat/completions"), &body).await;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("Paris"), "{answer}");
    let input = json!({"model": "all-minilm-l6-v2", "input": "a packaged node"});
    let embedding = post_json(&client, format!("{base}/v1/embeddings"), &input).await;
    assert_eq!(
        embedding["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384),
        "{embedding}"
    );

    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    let status = node.wait().unwrap();
    assert!(status.success(), "SIGTERM ended the node with {status}");
    // The node wrote its registry under the state dir, owned by the service user.
    let store: Vec<_> = std::fs::read_dir(&state).unwrap().collect();
    assert!(!store.is_empty(), "nothing in /var/lib/golek");

    // An edited config file is kept when the package is installed again.
    let conf = root.path().join("etc/golek/node.toml");
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(&conf).unwrap()
    );
    std::fs::write(&conf, &edited).unwrap();
    root.apt(&["install", "--reinstall", "/tmp/golek.deb"]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);

    // Remove: the binary goes; the state, the user and the edited config stay.
    root.apt(&["remove", "golek"]);
    assert!(!root.path().join("usr/bin/golek").exists());
    assert!(std::fs::read_dir(&state).unwrap().next().is_some());
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    run(&mut root.chroot(&["id", "golek"]));
}
