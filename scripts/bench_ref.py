"""Benchmark the integer reference (sw.ref) on the Fashion-MNIST test set, beside LiteRT.

    python scripts/bench_ref.py [--model model.tvt] [--images 10000] [--json out.json]

Without --model, packs a randomly initialised `vit-fmnist` (speed does not depend on the
weights; accuracy then means nothing). LiteRT: when `sw.export` can export the model, the same
images also run through ai-edge-litert (default kernels and BUILTIN_REF, one image per
invoke as LiteRT's Python API does), and the logits are compared with sw.ref's bit for bit.
Results go in the `## Integer reference` section of docs/benchmarks.md (by hand).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def litert_runner(model):
    """A function images -> (int8 logits, {name: images/s}) with LiteRT, or None with the reason.

    The hook for other exporters: anything returning .tflite bytes for a sw.tvt.Model."""
    try:
        from sw.export.graph import export_tflite  # the hook: .tvt Model -> .tflite bytes
        data = export_tflite(model)
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except Exception as e:  # no exporter for this graph kind, or LiteRT missing
        return None, f"{type(e).__name__}: {e}"

    def run(images, resolver):
        it = Interpreter(model_content=data, experimental_op_resolver_type=resolver, num_threads=2)
        it.allocate_tensors()
        i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        out = np.empty((len(images), model.config["num_classes"]), np.int8)
        t0 = time.perf_counter()
        for k, img in enumerate(images):
            it.set_tensor(i_in, np.ascontiguousarray(img[None]))
            it.invoke()
            out[k] = it.get_tensor(i_out)[0]
        return out, len(images) / (time.perf_counter() - t0)

    return {"litert_builtin": lambda x: run(x, OpResolverType.AUTO),
            "litert_builtin_ref": lambda x: run(x, OpResolverType.BUILTIN_REF)}, None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help=".tvt model (default: pack a random vit-fmnist)")
    p.add_argument("--images", type=int, default=10000, help="test images (default 10000)")
    p.add_argument("--batch-size", type=int, default=500, help="sw.ref batch size (default 500)")
    p.add_argument("--litert-images", type=int, default=2000,
                   help="images for each LiteRT run (default 2000; 0: skip LiteRT)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    from sw import tvt
    from sw.data import load_dataset
    from sw.ref import graph
    if args.model:
        model, source = tvt.load(args.model), args.model
    else:
        from sw import pack
        tmp = os.path.join(tempfile.mkdtemp(), "vit-fmnist-random.tvt")
        pack.main(["--arch", "vit-fmnist", "--init", "random", "--golden", "0", "-o", tmp])
        model, source = tvt.load(tmp), "vit-fmnist (random init)"
    inp = model.config["input"]
    x, y = load_dataset("fashion-mnist", "test", img_size=inp["H"], in_chans=inp["C"])
    x, y = x[:args.images], y[:args.images]

    graph.run(model, x[:args.batch_size], batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    logits = graph.run(model, x, batch_size=args.batch_size, progress=True)
    seconds = time.perf_counter() - t0
    res = {"model": source, "arch": model.config.get("arch"), "images": len(x),
           "batch_size": args.batch_size, "sw_ref_seconds": round(seconds, 2),
           "sw_ref_images_per_s": round(len(x) / seconds, 1),
           "sw_ref_top1": round(float((logits.argmax(1) == y).mean()), 4),
           "cpu_count": os.cpu_count()}
    if args.litert_images > 0:
        runners, why = litert_runner(model)
        if runners is None:
            res["litert"] = f"unavailable ({why})"
        else:
            n = min(args.litert_images, len(x))
            for name, fn in runners.items():
                out, ips = fn(x[:n])
                res[f"{name}_images_per_s"] = round(ips, 1)
                res[f"{name}_bit_exact_fraction"] = round(float((out == logits[:n]).all(1).mean()), 4)
                res[f"{name}_max_lsb_diff"] = int(np.abs(out.astype(int) - logits[:n]).max())
                res[f"{name}_top1_agreement"] = round(float((out.argmax(1) == logits[:n].argmax(1)).mean()), 4)
                res[f"{name}_top1"] = round(float((out.argmax(1) == y[:n]).mean()), 4)
            res["litert_images"] = n
    for k, v in res.items():
        print(f"{k}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
