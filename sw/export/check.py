"""Compare an exported .tflite with sw.ref: whole-graph agreement and op-by-op, in place."""
from __future__ import annotations

import numpy as np

from sw.ref import graph, ops


def _interpreter(data: bytes, preserve: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=data, experimental_preserve_all_tensors=preserve,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


def run_tflite(data: bytes, images: np.ndarray) -> np.ndarray:
    """int8 logits [N, classes] of uint8 images [N, C, H, W], one image per invoke."""
    it = _interpreter(data, False)
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for img in images:
        it.set_tensor(i_in, np.ascontiguousarray(img[None]))
        it.invoke()
        out.append(it.get_tensor(i_out)[0].copy())
    return np.stack(out)


# LSB LiteRT may differ from sw.ref by, per op kind: the float LayerNorm subgraph, and a
# linear layer some of whose multipliers no float32 scale reproduces (packed with < 31 bits)
TOLERANCE_LSB = {"layernorm": 1, "linear_approx": 1}


def reference_op(model, kind: str, name: str, inputs: list[np.ndarray]) -> np.ndarray:
    """sw.ref's op `name` applied to LiteRT's own input tensors."""
    if kind in ("linear", "linear_approx"):
        layer = model.linear(name)
        return ops.ternary_linear(inputs[0], layer.trits, layer.bias, layer.m0, layer.shift,
                                  layer.out_zp)
    arrays = model.op_arrays(name)
    if kind == "layernorm":
        return ops.layernorm(inputs[0], ops.LayerNormParams.from_arrays(arrays))
    if kind == "add":
        return ops.add(inputs[0], inputs[1], ops.AddParams.from_arrays(arrays))
    if kind in ("matmul", "matmul_adj_y"):
        b = np.swapaxes(inputs[1], -1, -2) if kind == "matmul_adj_y" else inputs[1]
        return ops.matmul_p(inputs[0], b, ops.MatmulParams.from_arrays(arrays))
    if kind == "softmax":
        return ops.softmax(inputs[0], ops.SoftmaxParams.from_multiplier(
            int(arrays["input_multiplier"]), int(arrays["input_left_shift"]), int(arrays["diff_min"])))
    if kind == "mean":
        return ops.mean(inputs[0], 1, ops.MeanParams.from_arrays(arrays))
    if kind == "gelu":
        return ops.gelu(inputs[0], arrays["table"])
    raise ValueError(f"unknown op kind {kind!r}")


def check_ops_in_place(model, data: bytes, record, images: np.ndarray) -> dict:
    """Run LiteRT keeping every tensor; recompute each int8 op with sw.ref on LiteRT's inputs.

    Returns {op name: (kind, max |LiteRT - sw.ref| in LSB)} over the images."""
    it = _interpreter(data, True)
    i_in = it.get_input_details()[0]["index"]
    worst: dict = {}
    for img in images:
        it.set_tensor(i_in, np.ascontiguousarray(img[None]))
        it.invoke()
        for kind, name, ins, out in record:
            want = reference_op(model, kind, name, [it.get_tensor(i) for i in ins])
            diff = int(np.abs(it.get_tensor(out).astype(np.int64) - want).max())
            worst[name] = (kind, max(diff, worst.get(name, (kind, 0))[1]))
    return worst


def compare(model, data: bytes, images: np.ndarray) -> dict:
    """Flat report: logits of the .tflite vs sw.ref on the same images."""
    ref = graph.run(model, images)
    lite = run_tflite(data, images)
    diff = np.abs(ref.astype(np.int64) - lite)
    return {"images": int(len(images)),
            "logits_bit_exact": int(np.all(diff == 0, axis=1).sum()),
            "logits_max_lsb": int(diff.max(initial=0)),
            "top1_agree": int((ref.argmax(1) == lite.argmax(1)).sum())}
