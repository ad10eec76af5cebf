//! Params of the remote providers (`triton`, `openai`): URL, model names, keys, and the
//! connection (timeouts, concurrency, TLS) they share.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{typed, Checker};
use crate::node_config::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTritonParams {
    url: String,
    #[serde(default)]
    remote_model: Option<String>,
    #[serde(default)]
    remote_version: Option<String>,
}

/// The connection settings every remote deployment has, taken out of its params before the
/// provider's own keys are read (see [`take_connection`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    #[serde(default = "default_remote_timeout_ms")]
    timeout_ms: i64,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: i64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: i64,
    #[serde(default)]
    tls_ca_path: Option<String>,
    #[serde(default)]
    tls_client_cert_path: Option<String>,
    #[serde(default)]
    tls_client_key_path: Option<String>,
    #[serde(default)]
    tls_insecure_skip_verify: bool,
}

const CONNECTION_KEYS: [&str; 7] = [
    "timeout_ms",
    "connect_timeout_ms",
    "max_in_flight",
    "tls_ca_path",
    "tls_client_cert_path",
    "tls_client_key_path",
    "tls_insecure_skip_verify",
];

/// Moves the connection keys out of a remote deployment's params.
fn take_connection(params: &mut toml::Table) -> toml::Table {
    CONNECTION_KEYS
        .iter()
        .filter_map(|&k| params.remove(k).map(|v| (k.to_string(), v)))
        .collect()
}

fn default_remote_timeout_ms() -> i64 {
    30_000
}
fn default_connect_timeout_ms() -> i64 {
    2_000
}
fn default_max_in_flight() -> i64 {
    32
}

pub(super) fn triton_params(
    model_prefix: &str,
    params: toml::Table,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<TritonParams> {
    let prefix = format!("{model_prefix}.params");
    let mut params = params;
    let connection = take_connection(&mut params);
    let raw: RawTritonParams = typed(toml::Value::Table(params), &prefix, c)?;
    let url = c.base_url(&format!("{prefix}.url"), &raw.url, "http://10.0.0.5:8000");
    let connection = remote_connection(&prefix, &url, connection, assets_dir, c);
    Some(TritonParams {
        url,
        remote_model: raw.remote_model,
        remote_version: raw.remote_version,
        connection: connection?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenaiParams {
    base_url: String,
    #[serde(default)]
    remote_model: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    api_key_file: Option<String>,
}

pub(super) fn openai_params(
    model_prefix: &str,
    params: toml::Table,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<OpenaiParams> {
    let prefix = format!("{model_prefix}.params");
    let mut params = params;
    let connection = take_connection(&mut params);
    let raw: RawOpenaiParams = typed(toml::Value::Table(params), &prefix, c)?;
    let base_url = c.base_url(
        &format!("{prefix}.base_url"),
        &raw.base_url,
        "http://10.0.0.7:8000/v1",
    );
    if raw.api_key_env.is_some() && raw.api_key_file.is_some() {
        c.fail(
            &format!("{prefix}.api_key_file"),
            "set api_key_env or api_key_file, not both",
        );
    }
    let api_key_file = raw
        .api_key_file
        .as_deref()
        .and_then(|p| c.path(&format!("{prefix}.api_key_file"), p, assets_dir));
    let connection = remote_connection(&prefix, &base_url, connection, assets_dir, c);
    Some(OpenaiParams {
        base_url,
        remote_model: raw.remote_model,
        api_key_env: raw.api_key_env,
        api_key_file,
        connection: connection?,
    })
}

/// Checks the connection keys [`take_connection`] took out of a remote deployment's params.
fn remote_connection(
    prefix: &str,
    url: &str,
    table: toml::Table,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<RemoteConnection> {
    let raw: RawConnection = typed(toml::Value::Table(table), prefix, c)?;
    let limits = remote_limits(
        prefix,
        raw.timeout_ms,
        raw.connect_timeout_ms,
        raw.max_in_flight,
        c,
    );
    let tls = remote_tls(
        prefix,
        url,
        [
            raw.tls_ca_path.as_deref(),
            raw.tls_client_cert_path.as_deref(),
            raw.tls_client_key_path.as_deref(),
        ],
        raw.tls_insecure_skip_verify,
        assets_dir,
        c,
    );
    let (timeout, connect_timeout, max_in_flight) = limits?;
    Some(RemoteConnection {
        timeout,
        connect_timeout,
        max_in_flight,
        tls: tls?,
    })
}

/// TLS options of a remote deployment: paths resolved, a certificate only with its key, no
/// CA together with `insecure_skip_verify`, and none of them on a plain `http://` URL.
fn remote_tls(
    prefix: &str,
    url: &str,
    [ca, cert, key]: [Option<&str>; 3],
    insecure: bool,
    assets_dir: &Path,
    c: &mut Checker<'_>,
) -> Option<RemoteTls> {
    let mut ok = true;
    if !url.starts_with("https://") && (ca.is_some() || cert.is_some() || key.is_some() || insecure)
    {
        c.fail(
            &format!("{prefix}.tls_ca_path"),
            format!("TLS options need an https:// URL, got {url:?}"),
        );
        ok = false;
    }
    if cert.is_some() != key.is_some() {
        c.fail(
            &format!("{prefix}.tls_client_key_path"),
            "set tls_client_cert_path and tls_client_key_path together (mutual TLS needs both)",
        );
        ok = false;
    }
    if insecure && ca.is_some() {
        c.fail(
            &format!("{prefix}.tls_insecure_skip_verify"),
            "true skips verification, so tls_ca_path would be ignored: set one or the other",
        );
        ok = false;
    }
    let mut resolve = |name: &str, value: Option<&str>| match value {
        None => Some(None),
        Some(v) => c.path(&format!("{prefix}.{name}"), v, assets_dir).map(Some),
    };
    let ca_path = resolve("tls_ca_path", ca);
    let client_cert_path = resolve("tls_client_cert_path", cert);
    let client_key_path = resolve("tls_client_key_path", key);
    ok.then_some(())?;
    Some(RemoteTls {
        ca_path: ca_path?,
        client_cert_path: client_cert_path?,
        client_key_path: client_key_path?,
        insecure_skip_verify: insecure,
    })
}

/// The limits every remote deployment has: request and connect timeouts, requests in flight.
fn remote_limits(
    prefix: &str,
    timeout_ms: i64,
    connect_timeout_ms: i64,
    max_in_flight: i64,
    c: &mut Checker<'_>,
) -> Option<(Duration, Duration, u32)> {
    let timeout = c.millis(&format!("{prefix}.timeout_ms"), timeout_ms, 1, 3_600_000);
    let connect = c.millis(
        &format!("{prefix}.connect_timeout_ms"),
        connect_timeout_ms,
        1,
        600_000,
    );
    let in_flight = c.range(&format!("{prefix}.max_in_flight"), max_in_flight, 1, 4096);
    Some((timeout?, connect?, in_flight? as u32))
}
