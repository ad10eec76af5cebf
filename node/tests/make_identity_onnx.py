"""Writes a small ONNX graph that echoes FP16, BF16 and string tensors (argument: output path).

Each output is its input through `Identity`, so a client can check that every datatype travels
through the node unchanged, in JSON and in the binary tensor data extension.
"""
import sys

import onnx
from onnx import TensorProto, helper

pairs = [("half", TensorProto.FLOAT16), ("brain", TensorProto.BFLOAT16), ("text", TensorProto.STRING)]
inputs = [helper.make_tensor_value_info(n, t, ["n"]) for n, t in pairs]
outputs = [helper.make_tensor_value_info(f"{n}_out", t, ["n"]) for n, t in pairs]
nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _ in pairs]
graph = helper.make_graph(nodes, "identity", inputs, outputs)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
