//! Every HTTP request runs in a span of its own: its `request_id` (the client's `x-request-id`,
//! or one made here) and `trace_id` (the client's `traceparent` continued, or a new trace) are
//! in every log line of the request and in its answer's headers. The span lasts until the
//! answer's body ends, so a stream's whole life is inside it.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use golek_protocol::trace::TraceParent;
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::metrics as m;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";

/// A client's request id is used when it is 1 to 128 visible ASCII characters.
fn client_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok =
        !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| (0x21..0x7f).contains(&b));
    ok.then(|| text.to_string())
}

pub async fn traced(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().clone();
    let headers = request.headers();
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(client_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let incoming = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let tracestate = headers
        .get(TRACESTATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let traced = golek_actors::trace::decide(incoming.as_ref());
    // A traced request's span name, `METHOD route`.
    let name = traced.then(|| {
        let mut name = String::with_capacity(method.as_str().len() + 1 + route.len());
        name.push_str(method.as_str());
        name.push(' ');
        name.push_str(&route);
        name
    });
    let span = golek_actors::trace::ingress(traced, || {
        tracing::info_span!(
            "http_request",
            otel.name = name.as_deref(),
            otel.kind = "server",
            request_id = request_id.as_str(),
            trace_id = tracing::field::Empty,
            http.request.method = method.as_str(),
            http.route = route.as_str(),
            http.response.status_code = tracing::field::Empty,
        )
    });
    let hop = golek_actors::trace::begin(&span, traced, incoming, tracestate.as_deref());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(m::HTTP_REQUEST_DURATION_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(parent: &span, status, ms = started.elapsed().as_millis() as u64, "request answered");
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&hop.header()) {
        parts.headers.insert(TRACEPARENT_HEADER, value);
    }
    // The span ends with the body (a stream's last event), not with the headers.
    let body = body.map_frame(move |frame| {
        let _inside = &span;
        frame
    });

    Response::from_parts(parts, Body::new(body))
}
