//! Golek embedded in a program: the portable runtime runs a chat model and an embedding model
//! in this process (the same supervision, providers and configuration as `golek serve`, no
//! HTTP), streams a generation and embeds two sentences.
//!
//! cargo run -p golek-node --example embedded [CHAT_MODEL] [EMBEDDING_MODEL]
//!
//! The defaults are the models `make run` serves (smollm2-135m-instruct, all-minilm-l6-v2).

use std::io::Write;
use std::time::Duration;

use golek_node::Runtime;
use golek_protocol::inference::{
    ChatMessage, GenerateRequest, InferenceEvent, Prompt, SamplingParams,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let chat = args
        .next()
        .unwrap_or_else(|| "smollm2-135m-instruct".into());
    let embedder = args.next().unwrap_or_else(|| "all-minilm-l6-v2".into());

    let rt = Runtime::builder()
        .only([chat.as_str(), embedder.as_str()])
        .start()
        .await?;
    rt.ready(&chat, Duration::from_secs(300)).await?;
    rt.ready(&embedder, Duration::from_secs(300)).await?;

    // A streamed chat answer, event by event.
    let request = GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", "Name a colour.")]),
        Some(16),
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
    );
    let mut events = rt
        .generate(&chat, request)
        .map_err(|e| anyhow::anyhow!(e.message))?;
    print!("chat: ");
    while let Some(event) = events.next().await {
        match event.map_err(|e| anyhow::anyhow!(e.message))? {
            InferenceEvent::Served { node, model } => eprintln!("served by {node}/{model}"),
            InferenceEvent::Text { text, .. } => {
                print!("{text}");
                std::io::stdout().flush()?;
            }
            InferenceEvent::Finished {
                reason,
                completion_tokens,
                ..
            } => println!(
                "\nfinished: {} after {completion_tokens} tokens",
                reason.as_str()
            ),
            _ => {}
        }
    }

    let vectors = rt
        .embed(&embedder, &["The sky is blue.", "Grass is green."])
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let dot: f32 = vectors[0]
        .vector
        .iter()
        .zip(&vectors[1].vector)
        .map(|(a, b)| a * b)
        .sum();
    println!(
        "embeddings: {} vectors of {} dimensions, cosine {dot:.3}",
        vectors.len(),
        vectors[0].vector.len()
    );
    rt.shutdown().await
}
