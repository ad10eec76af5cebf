//! KServe v2 with the binary tensor data extension, decoded as the node's `/v2/.../infer`
//! does: `Inference-Header-Content-Length` splits the body (`kserve::split_body`), the JSON
//! header is parsed, each input takes its `binary_data_size` bytes (`kserve::decode_input`),
//! and no bytes may be left over. The input is `HEADER\nBODY` (no newline: no header).
#![no_main]

use golek_protocol::inference::{InferenceRequest, TensorRequest};
use golek_protocol::kserve::{self, InferBody};
use golek_protocol::validate::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (
            Some(std::str::from_utf8(&data[..at]).unwrap_or("(not text)")),
            &data[at + 1..],
        ),
        None => (None, data),
    };
    let Ok((json_part, mut binary)) = kserve::split_body(body, header) else {
        return;
    };
    assert_eq!(json_part.len() + binary.len(), body.len());
    let Ok(body) = parse_json::<InferBody>(json_part) else {
        return;
    };
    if body.inputs.is_empty() {
        return;
    }
    let mut inputs = Vec::new();
    for input in body.inputs {
        let Ok(t) = kserve::decode_input(input, &mut binary) else {
            return;
        };
        let (described, bytes) = kserve::to_binary(&t);
        let mut rest = &bytes[..];
        let back = kserve::decode_input(described, &mut rest).expect("a binary tensor decodes");
        assert_eq!(kserve::to_raw(&back.data), bytes);
        let _ = kserve::to_json(&t);
        inputs.push(t);
    }
    if !binary.is_empty() {
        return;
    }
    InferenceRequest::Tensors(TensorRequest {
        inputs,
        outputs: vec![],
    })
    .check()
    .expect("decoded tensors have the elements their shapes need");
});
