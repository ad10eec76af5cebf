"""Triton's own HTTP client (tritonclient) against a running node (argument: host:port)."""
import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "all-minilm-l6-v2"
client = httpclient.InferenceServerClient(url=sys.argv[1])

assert client.is_server_live()
assert client.is_server_ready()
assert client.is_model_ready(MODEL)
assert client.get_server_metadata()["name"] == "golek"
meta = client.get_model_metadata(MODEL)
assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"], meta
assert meta["inputs"][0]["datatype"] == "INT64"
assert meta["outputs"][0] == {"name": "last_hidden_state", "datatype": "FP32", "shape": [-1, -1, 384]}, meta

# [CLS] hello world [SEP]
ids = np.array([[101, 7592, 2088, 102]], dtype=np.int64)


def tensors(first_dtype="INT64"):
    out = []
    for name, arr, dt in [
        ("input_ids", ids if first_dtype == "INT64" else ids.astype(np.float32), first_dtype),
        ("attention_mask", np.ones_like(ids), "INT64"),
        ("token_type_ids", np.zeros_like(ids), "INT64"),
    ]:
        t = httpclient.InferInput(name, list(arr.shape), dt)
        t.set_data_from_numpy(arr, binary_data=False)
        out.append(t)
    return out


result = client.infer(MODEL, tensors(), outputs=[httpclient.InferRequestedOutput("last_hidden_state", binary_data=False)])
hidden = result.as_numpy("last_hidden_state")
assert hidden.shape == (1, 4, 384), hidden.shape

# Mean-pooled and normalised, the graph's output is the node's own embedding of the same text.
pooled = hidden[0].mean(axis=0)
pooled /= np.linalg.norm(pooled)
request = urllib.request.Request(
    f"http://{sys.argv[1]}/v1/embeddings",
    data=json.dumps({"model": MODEL, "input": "hello world"}).encode(),
    headers={"content-type": "application/json"},
)
embedding = np.array(json.load(urllib.request.urlopen(request))["data"][0]["embedding"])
assert np.abs(pooled - embedding).max() < 1e-4, np.abs(pooled - embedding).max()

# Errors: a wrong datatype names the tensor; an unknown model is refused.
try:
    client.infer(MODEL, tensors("FP32"))
    raise AssertionError("FP32 input_ids must be refused")
except InferenceServerException as e:
    assert "input_ids" in str(e), str(e)
try:
    client.get_model_metadata("no-such-model")
    raise AssertionError("an unknown model must be refused")
except InferenceServerException as e:
    assert "no-such-model" in str(e), str(e)

print("tritonclient: ok")
