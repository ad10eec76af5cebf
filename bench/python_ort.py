"""What a user would write instead of Golek: tokenizers + onnxruntime + numpy in a loop.

Prints one JSON line per batch size: {"batch": B, "sentences_per_s": ..., "p50_ms": ..., "p99_ms": ...}
where latency is per call (one batch of B sentences).
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

model_dir, seconds, batches = sys.argv[1], float(sys.argv[2]), [int(b) for b in sys.argv[3].split(",")]
sentences = [line.strip() for line in open(sys.argv[4]) if line.strip()]

tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.no_padding()
tok.enable_padding()
tok.enable_truncation(512)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(f"{model_dir}/model.onnx", opts, providers=["CPUExecutionProvider"])


def embed(texts):
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    out = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    pooled = (out * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


for batch in batches:
    embed(sentences[:batch])  # warm up
    lat = []
    done = 0
    i = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        texts = [sentences[(i + k) % len(sentences)] for k in range(batch)]
        i += batch
        t0 = time.perf_counter()
        embed(texts)
        lat.append(time.perf_counter() - t0)
        done += batch
    elapsed = time.perf_counter() - start
    lat.sort()
    print(json.dumps({
        "batch": batch,
        "sentences_per_s": done / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1e3,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
    }), flush=True)
