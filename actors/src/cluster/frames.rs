//! Reading length-prefixed frames off a QUIC stream. The buffer grows as bytes arrive, never
//! to the announced length up front: a stream that announces 64 MiB and sends ten bytes
//! costs ten bytes (plus one chunk), however many such streams are open.

use golek_protocol::cluster::frame_length;

/// The most a buffer grows ahead of the data it holds.
const CHUNK: usize = 64 << 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("reading a frame: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("{0}")]
    TooLong(String),
    #[error("the stream ended {got} bytes into a frame of {want}")]
    Truncated { got: usize, want: usize },
}

/// Sends `request` as one frame, ends the sending side, and reads the one frame answered
/// (`Ok(None)` when the other side closed the stream without one).
pub async fn exchange<T: serde::Serialize>(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    request: &T,
) -> Result<Option<Vec<u8>>, String> {
    let frame = golek_protocol::cluster::encode_frame(request)?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    read_frame(recv).await.map_err(|e| e.to_string())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match recv.read(&mut header[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(FrameError::Truncated { got, want: 4 }),
        }
    }
    let want = frame_length(header).map_err(FrameError::TooLong)?;
    let mut body: Vec<u8> = Vec::with_capacity(want.min(CHUNK));
    while body.len() < want {
        let room = (want - body.len()).min(CHUNK);
        match recv.read_chunk(room, true).await? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(FrameError::Truncated {
                    got: body.len(),
                    want,
                })
            }
        }
    }
    Ok(Some(body))
}
