//! `golek status`: a running node's supervision tree, as a tree for a person or as JSON.

use anyhow::Context;

/// GETs `url` and reads its JSON body; a non-2xx answer is an error naming the status.
pub fn fetch_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // With auth on, an admin key from GOLEK_API_KEY.
        let mut request = reqwest::Client::new().get(url);
        if let Ok(key) = std::env::var("GOLEK_API_KEY") {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "{url} answered HTTP {}",
            response.status()
        );
        Ok::<_, anyhow::Error>(response.json().await?)
    })
}

pub fn actors_command(http: &str, json: bool) -> anyhow::Result<()> {
    let body = fetch_json(&format!("http://{http}/admin/actors"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        let mut out = String::new();
        render(&body, "", true, true, &mut out);
        print!("{out}");
    }
    Ok(())
}

/// One line an actor: name, kind, state, restarts, breaker and last failure, indented as a
/// tree.
fn render(actor: &serde_json::Value, prefix: &str, last: bool, root: bool, out: &mut String) {
    let (branch, next) = match (root, last) {
        (true, _) => ("", String::new()),
        (false, true) => ("└── ", format!("{prefix}    ")),
        (false, false) => ("├── ", format!("{prefix}│   ")),
    };
    let text = |key: &str| actor[key].as_str().unwrap_or("-").to_string();
    let mut line = format!(
        "{prefix}{branch}{} [{}] {}",
        text("name"),
        text("kind"),
        text("state")
    );
    let restarts = actor["restarts"].as_u64().unwrap_or(0);
    if restarts > 0 {
        line.push_str(&format!(" restarts={restarts}"));
    }
    if let Some(breaker) = actor["breaker"].as_str() {
        line.push_str(&format!(" breaker={breaker}"));
    }
    if let Some(failure) = actor["last_failure"].as_str() {
        line.push_str(&format!(" last_failure={failure:?}"));
    }
    out.push_str(&line);
    out.push('\n');
    let children = actor["children"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, child) in children.iter().enumerate() {
        render(child, &next, i + 1 == children.len(), false, out);
    }
}

/// `golek cluster status` for a person: one line a member.
pub(crate) fn cluster_table(body: &serde_json::Value) -> String {
    let mut out = format!(
        "cluster {} as seen by {}\n{:<20} {:<6} {:<22} {:>7} {}\n",
        body["cluster_id"].as_str().unwrap_or("-"),
        body["node_id"].as_str().unwrap_or("-"),
        "NODE",
        "ALIVE",
        "HTTP",
        "QUEUED",
        "MODELS"
    );
    for m in body["members"].as_array().into_iter().flatten() {
        let models: Vec<String> = m["models"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                format!(
                    "{} ({})",
                    x["name"].as_str().unwrap_or("?"),
                    x["state"].as_str().unwrap_or("?")
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<20} {:<6} {:<22} {:>7} {}\n",
            m["node_id"].as_str().unwrap_or("?"),
            if m["alive"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            m["http_addr"].as_str().unwrap_or("-"),
            m["load"]["queued"].as_u64().unwrap_or(0),
            models.join(", ")
        ));
    }
    for r in body["refused"].as_array().into_iter().flatten() {
        out.push_str(&format!("refused: {}\n", r.as_str().unwrap_or("?")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_shows_states_restarts_and_failures() {
        let body = serde_json::json!({
            "name": "SystemModule", "kind": "system", "state": "running", "restarts": 0,
            "children": [
                {"name": "ClusterManager", "kind": "cluster_manager", "state": "running",
                 "restarts": 0, "children": [
                    {"name": "publisher", "kind": "loop", "state": "running", "restarts": 1,
                     "last_failure": "loop publisher panicked: boom", "children": []}]},
                {"name": "Router", "kind": "router", "state": "running", "restarts": 0,
                 "children": []}
            ]
        });
        let mut out = String::new();
        render(&body, "", true, true, &mut out);
        assert_eq!(
            out,
            "SystemModule [system] running\n\
             ├── ClusterManager [cluster_manager] running\n\
             │   └── publisher [loop] running restarts=1 last_failure=\"loop publisher panicked: boom\"\n\
             └── Router [router] running\n"
        );
    }
}
