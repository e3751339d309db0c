"""`python -m sw.export model.tvt -o model.tflite [--check] [--dataset D --limit N] [--json r.json]`.

Writes an int8 .tflite of a ViT/DeiT or Swin .tvt (batch 1: uint8 image [1, C, H, W] in,
int8 logits out). --check runs it in ai-edge-litert (BUILTIN_REF) on the golden images (and
--dataset images) and reports how it agrees with sw.ref: every int8 builtin op recomputed by
sw.ref on LiteRT's own inputs must be bit-exact, LayerNorm (float in TFLite) within 1 LSB.
Exit codes: 0 ok, 1 an op disagrees beyond that, 2 bad input (file, unsupported model).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _parser():
    p = argparse.ArgumentParser(prog="python -m sw.export", description=(
        "Export a ViT/DeiT or Swin .tvt model to an int8 .tflite (LiteRT builtins; LayerNorm as a "
        "float subgraph) and optionally check it against the integer reference."))
    p.add_argument("model", help="the .tvt file")
    p.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    p.add_argument("--check", action="store_true",
                   help="run the .tflite in LiteRT and compare with sw.ref (golden images)")
    p.add_argument("--dataset", help="also compare on this dataset's test images (with --check)")
    p.add_argument("--data-dir", help="dataset directory")
    p.add_argument("--limit", type=int, default=100, help="dataset images to compare (default 100)")
    p.add_argument("--json", help="write a flat JSON report here")
    return p


def _fail(msg: str) -> int:
    print(f"sw.export: error: {msg}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from sw import tvt
    from sw.export.graph import export_tflite
    try:
        if args.limit < 1:
            raise ValueError("--limit must be at least 1")
        model = tvt.load(args.model)
        data, record = export_tflite(model, with_record=True)
    except FileNotFoundError as e:
        return _fail(f"no such file: {e.filename}")
    except (ValueError, OSError) as e:  # FormatError, ExportError
        return _fail(str(e))
    try:
        with open(args.output, "wb") as f:
            f.write(data)
    except OSError as e:
        return _fail(f"cannot write {args.output}: {e.strerror}")
    approx = sum(k == "linear_approx" for k, *_ in record)
    report = {"model": args.model, "output": args.output, "bytes": len(data),
              "linear_layers_approx": approx, "ops_checked": 0}
    print(f"sw.export: wrote {args.output} ({len(data)} bytes, {len(record)} int8 ops "
          f"+ LayerNorm subgraphs)")
    if approx:
        print(f"sw.export: {approx} linear layers have multipliers no float32 scale reproduces "
              "(packed with --multiplier-bits < 31): LiteRT may differ there by 1 LSB")
    status = 0
    if args.check:
        from sw.export import check
        images = []
        if model.golden is not None:
            images.append(model.golden[0])
        if args.dataset:
            from sw.data import load_dataset
            inp = model.config["input"]
            try:
                imgs = load_dataset(args.dataset, "test", args.data_dir, img_size=inp["H"],
                                    in_chans=inp["C"])[0][:args.limit]
            except (ValueError, OSError) as e:
                return _fail(str(e))
            images.append(imgs.reshape(len(imgs), inp["C"], inp["H"], inp["W"]))
        if not images:
            return _fail("--check needs golden images in the model or --dataset")
        images = np.concatenate(images)
        worst = check.check_ops_in_place(model, data, record, images[:8])
        bad = [f"{n} ({k}: {d} LSB)" for n, (k, d) in worst.items()
               if d > check.TOLERANCE_LSB.get(k, 0)]
        ln_max = max((d for k, d in worst.values() if k == "layernorm"), default=0)
        approx_max = max((d for k, d in worst.values() if k == "linear_approx"), default=0)
        other_max = max((d for k, d in worst.values() if k not in check.TOLERANCE_LSB), default=0)
        report.update(check.compare(model, data, images))
        report.update({"ops_checked": len(worst), "ops_max_lsb_builtin": other_max,
                       "ops_max_lsb_layernorm": ln_max, "ops_max_lsb_linear_approx": approx_max,
                       "ops_bad": len(bad)})
        print(f"in place (sw.ref on LiteRT's inputs, {min(8, len(images))} images): "
              f"{len(worst)} ops, builtins max {other_max} LSB, LayerNorm max {ln_max} LSB, "
              f"approximated linear max {approx_max} LSB")
        print(f"logits vs sw.ref on {report['images']} images: {report['logits_bit_exact']} "
              f"bit-exact, max {report['logits_max_lsb']} LSB, top-1 agrees on "
              f"{report['top1_agree']}")
        if bad:
            print("sw.export: ops out of bounds: " + ", ".join(bad), file=sys.stderr)
            status = 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
