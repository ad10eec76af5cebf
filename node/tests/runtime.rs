//! The portable runtime (`golek_node::Runtime`): models in this process with the node's
//! configuration and supervision, the example program under `examples/embedded`, and
//! `golek run` (in process and against a node), `golek ps`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestNode;
use golek_node::Runtime;
use golek_protocol::inference::{
    ChatMessage, GenerateRequest, InferenceEvent, Prompt, SamplingParams,
};
use golek_protocol::ErrorCode;

const TINY: &str = "golek-tiny";
const MINILM: &str = "all-minilm-l6-v2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_runs_models_in_process_with_the_same_events_and_checks() {
    let rt = Runtime::builder()
        .only([TINY, MINILM])
        .start()
        .await
        .unwrap();
    rt.ready(TINY, Duration::from_secs(120)).await.unwrap();
    rt.ready(MINILM, Duration::from_secs(120)).await.unwrap();
    let mut names: Vec<String> = rt.models().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(
        names,
        [MINILM, TINY],
        "only the models asked for are loaded"
    );

    // The event stream: who served it first, text, then the end with its token count.
    let sampling = SamplingParams {
        temperature: 0.0,
        ignore_eos: true,
        ..Default::default()
    };
    let request = GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", "hello")]),
        Some(5),
        sampling,
    );
    let mut events = rt.generate(TINY, request).unwrap();
    let mut all = Vec::new();
    while let Some(e) = events.next().await {
        all.push(e.unwrap());
    }
    assert!(
        matches!(&all[0], InferenceEvent::Served { model, .. } if model == TINY),
        "{all:?}"
    );
    assert!(
        matches!(
            all.last(),
            Some(InferenceEvent::Finished {
                completion_tokens: 5,
                ..
            })
        ),
        "{all:?}"
    );
    assert!(!rt.complete(TINY, "once", 4).await.unwrap().is_empty());

    let vectors = rt.embed(MINILM, &["a cat", "a dog"]).await.unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].vector.len(), 384);

    // The checks of every door: an empty prompt names its field; an unknown model is 404.
    let empty = GenerateRequest::new(Prompt::Text(String::new()), Some(4), Default::default());
    let err = rt.generate(TINY, empty).err().expect("refused");
    assert_eq!(err.param.as_deref(), Some("prompt"), "{err:?}");
    let err = rt.embed("no-such-model", &["x"]).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
    let err = rt
        .ready("no-such-model", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-model"), "{err}");
    rt.shutdown().await.unwrap();

    // A model the configuration lacks is refused by name at start.
    let err = Runtime::builder()
        .only(["no-such-model"])
        .start()
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("no-such-model"), "{err}");
}

/// A file cargo builds next to the test binaries (`target/<profile>/...`).
fn built(relative: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile.join(relative);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build -p golek-node --examples`)",
        path.display()
    );
    path
}

#[test]
fn the_embedded_example_streams_a_chat_and_embeds() {
    let out = Command::new(built("examples/embedded"))
        .args([TINY, MINILM])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("chat: "), "{stdout}");
    assert!(stdout.contains("\nfinished: "), "{stdout}");
    assert!(
        stdout.contains("embeddings: 2 vectors of 384 dimensions"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("served by"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golek_run_answers_a_prompt_in_process_and_from_a_node() {
    let golek = env!("CARGO_BIN_EXE_golek");
    let run = |args: &[&str]| {
        let out = Command::new(golek).arg("run").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (ok, stdout, stderr) = run(&[TINY, "hello", "--max-tokens", "6", "--temperature", "0"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.trim().len() > 1, "no answer: {stdout:?}");
    // A terminal's conversation stays readable: no info logs.
    assert!(!stderr.contains(" INFO "), "{stderr}");

    let node = TestNode::start(&[]).await;
    let addr = node.base.trim_start_matches("http://").to_string();
    let (ok, from_node, stderr) = run(&[
        TINY,
        "hello",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--http",
        &addr,
    ]);
    assert!(ok, "{from_node}\n{stderr}");
    // Greedy: the node and the process give the same answer.
    assert_eq!(from_node, stdout);
    let (ok, _, stderr) = run(&["no-such-model", "hello", "--http", &addr]);
    assert!(!ok && stderr.contains("404"), "{stderr}");

    // An interactive session keeps the conversation: two answers, then the end of input.
    let mut child = Command::new(golek)
        .args(["run", TINY, "--max-tokens", "3", "--http", &addr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hi\nand again\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let prompts = String::from_utf8_lossy(&out.stderr).matches(">>> ").count();
    assert_eq!(prompts, 3, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());

    let ps = Command::new(golek)
        .args(["ps", "--http", &addr])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.status.success(), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(TINY) && l.contains("ready")),
        "{table}"
    );
}
