//! The openai provider's upstream stream reader (`openai::sse::read_events`): the SSE parser
//! (eventsource-stream) over arbitrary chunks, each event's data through
//! `wire::StreamState::read`, then `finish`.
//!
//! Input: byte 0 gives the choices (`1 + b & 3`) and when the client leaves (`b >> 2` polls,
//! 0: never); byte 1 the number of chunk cuts (`% 16`), then that many chunk lengths; the rest
//! is the body, cut into those chunks (the remainder is the last chunk).
#![no_main]

use std::cell::Cell;
use std::convert::Infallible;

use golek_protocol::inference::InferenceEvent;
use golek_providers::openai::sse::read_events;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, cuts, rest @ ..] = data else {
        return;
    };
    let n = 1 + u32::from(mode & 3);
    let leave_after = u32::from(mode >> 2);
    let cuts = usize::from(cuts % 16).min(rest.len());
    let (lengths, mut body) = rest.split_at(cuts);
    let mut chunks: Vec<Result<Vec<u8>, Infallible>> = Vec::new();
    for &len in lengths {
        let (chunk, tail) = body.split_at(usize::from(len).min(body.len()));
        chunks.push(Ok(chunk.to_vec()));
        body = tail;
    }
    chunks.push(Ok(body.to_vec()));

    let polls = Cell::new(0u32);
    let closed = || {
        polls.set(polls.get() + 1);
        leave_after != 0 && polls.get() > leave_after
    };
    let mut events = Vec::new();
    let outcome = futures_executor::block_on(read_events(
        futures_util::stream::iter(chunks),
        n,
        closed,
        |e| events.push(e),
        |e: Infallible| match e {},
    ));
    for e in &events {
        let choice = match e {
            InferenceEvent::Text { choice, .. }
            | InferenceEvent::ToolCall { choice, .. }
            | InferenceEvent::Finished { choice, .. } => *choice,
            other => panic!("a chat stream made {other:?}"),
        };
        assert!(choice < n, "choice {choice} of {n}");
    }
    let left = leave_after != 0 && polls.get() > leave_after;
    if outcome.is_ok() && !left {
        // The stream ends with one Finished per choice, in order.
        assert!(events.len() >= n as usize);
        for (i, e) in events[events.len() - n as usize..].iter().enumerate() {
            assert!(
                matches!(e, InferenceEvent::Finished { choice, .. } if *choice == i as u32),
                "{e:?}"
            );
        }
    }
});
