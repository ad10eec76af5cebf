//! KServe v2 JSON request decoding: the body (`InferBody`) and each input tensor
//! (`kserve::from_json`). A decoded tensor converts to JSON and to the binary form; its binary
//! form decodes back to the same bytes.
#![no_main]

use golek_protocol::inference::{InferenceRequest, NamedTensor, TensorRequest};
use golek_protocol::kserve::{self, InferBody};
use golek_protocol::validate::parse_json;
use libfuzzer_sys::fuzz_target;

fn round_trip(t: &NamedTensor) {
    let one = InferenceRequest::Tensors(TensorRequest {
        inputs: vec![t.clone()],
        outputs: vec![],
    });
    one.check()
        .expect("a decoded tensor has the elements its shape needs");
    let _ = kserve::to_json(t);
    let (described, bytes) = kserve::to_binary(t);
    let mut rest = &bytes[..];
    let back = kserve::decode_input(described, &mut rest).expect("a binary tensor decodes");
    assert!(rest.is_empty());
    assert_eq!(back.shape, t.shape);
    assert_eq!(kserve::to_raw(&back.data), bytes);
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_json::<InferBody>(data) else {
        return;
    };
    for output in body.outputs.iter().flatten() {
        let _ = body.wants_binary(&output.name);
    }
    let mut inputs = Vec::new();
    for input in body.inputs {
        if let Ok(t) = kserve::from_json(input) {
            round_trip(&t);
            inputs.push(t);
        }
    }
    let request = InferenceRequest::Tensors(TensorRequest {
        inputs,
        outputs: vec![],
    });
    let _ = request.check();
});
