//! An upstream's event stream read into inference events: the SSE parser (CRLF or LF line ends,
//! UTF-8 characters split across network chunks come through whole), then each event's data
//! through [`StreamState`]. No HTTP client here (feature `sse`), so that it builds and fuzzes
//! without one.

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use golek_protocol::inference::InferenceEvent;
use golek_protocol::{ErrorCode, ErrorInfo};

use super::StreamState;

/// Reads `body` (the upstream's chunks) for a request of `n` choices, passing each event to
/// `emit`, until `[DONE]` or the end of the body, then the closing events. Stops early, without
/// them, once `closed()` says the client left. A transport error goes through `transport`.
pub async fn read_events<S, B, E>(
    body: S,
    n: u32,
    closed: impl Fn() -> bool,
    mut emit: impl FnMut(InferenceEvent),
    transport: impl Fn(E) -> ErrorInfo,
) -> Result<(), ErrorInfo>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut state = StreamState::new(n);
    let mut events = std::pin::pin!(body.eventsource());
    while !state.done {
        if closed() {
            // The client left: dropping the body closes the upstream request.
            return Ok(());
        }
        let Some(event) = events.next().await else {
            break;
        };
        let event = event.map_err(|e| match e {
            EventStreamError::Transport(e) => transport(e),
            other => ErrorInfo::new(
                ErrorCode::ProviderError,
                format!("upstream sent a malformed event stream: {other}"),
            ),
        })?;
        for out in state.read(event.data.trim())? {
            emit(out);
        }
    }
    for out in state.finish() {
        emit(out);
    }
    Ok(())
}
