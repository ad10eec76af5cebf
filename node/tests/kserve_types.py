"""tritonclient with FP16 and BYTES tensors, in JSON and in binary, against a node that serves
make_identity_onnx.py's graph as model "identity" (argument: host:port)."""
import sys

import ml_dtypes
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

client = httpclient.InferenceServerClient(url=sys.argv[1])
meta = client.get_model_metadata("identity")
assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
    ("half", "FP16"), ("brain", "BF16"), ("text", "BYTES")], meta

half = np.array([1.0, -2.5, 0.099975586, 65504.0], dtype=np.float16)
text = np.array(["héllo".encode(), b"", b"golek"], dtype=np.object_)
brain = np.array([1.0, -3.140625], dtype=ml_dtypes.bfloat16)

for binary in (False, True):
    inputs = [
        httpclient.InferInput("half", [4], "FP16"),
        httpclient.InferInput("brain", [2], "BF16"),
        httpclient.InferInput("text", [3], "BYTES"),
    ]
    inputs[0].set_data_from_numpy(half, binary_data=binary)
    # tritonclient sends BF16 only in binary; JSON BF16 is covered by the Rust test.
    inputs[1].set_data_from_numpy(brain, binary_data=True)
    inputs[2].set_data_from_numpy(text, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("half_out", "brain_out", "text_out")]
    result = client.infer("identity", inputs, outputs=outputs)
    got = result.as_numpy("half_out")
    assert got.dtype == np.float16 and np.array_equal(got, half), (binary, got)
    got = result.as_numpy("text_out")
    # In JSON, BYTES come back as strings (as from Triton); in binary, as the bytes sent.
    want = list(text) if binary else [t.decode() for t in text]
    assert list(got) == want, (binary, got)
    got = result.as_numpy("brain_out")
    assert np.array_equal(got, brain), (binary, got)
    # Nothing requested: tritonclient asks for every output in binary.
    result = client.infer("identity", inputs)
    assert np.array_equal(result.as_numpy("half_out"), half)
    assert result.get_output("half_out")["parameters"]["binary_data_size"] == 8

# A binary size that does not match the shape names the tensor.
bad = httpclient.InferInput("half", [4], "FP16")
bad.set_data_from_numpy(half, binary_data=True)
bad.set_shape([3])
others = [httpclient.InferInput("brain", [2], "BF16"), httpclient.InferInput("text", [3], "BYTES")]
others[0].set_data_from_numpy(brain, binary_data=True)
others[1].set_data_from_numpy(text, binary_data=True)
try:
    client.infer("identity", [bad] + others)
    raise AssertionError("a short binary tensor must be refused")
except InferenceServerException as e:
    assert "half" in str(e) and "6 bytes" in str(e), str(e)

print("tritonclient types: ok")
