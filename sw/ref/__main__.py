"""`python -m sw.ref model.tvt --dataset fashion-mnist [--limit N] [--json out.json] [--golden]`.

Integer top-1 accuracy of a .tvt model on a dataset's test split; with --golden, also checks
the golden vectors embedded in the file bit for bit (exit 1 if any differs).
Exit codes: 0 ok, 1 golden outputs differ, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _parser():
    p = argparse.ArgumentParser(prog="python -m sw.ref", description=(
        "Run the integer-only NumPy reference of a .tvt model: dataset accuracy and/or a "
        "bit-exact check of the golden vectors in the file."))
    p.add_argument("model", help="the .tvt file")
    p.add_argument("--dataset", help="fashion-mnist | imagefolder:PATH | synthetic (test split)")
    p.add_argument("--data-dir", help="dataset directory (default: the dataset's usual place)")
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.add_argument("--golden", action="store_true", help="check the embedded golden vectors bit for bit")
    p.add_argument("--batch-size", type=int, help="images per NumPy batch (default: by model size, at most 256)")
    p.add_argument("--json", help="write a flat JSON report here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from sw import tvt
    from sw.ref import graph
    report: dict = {"model": args.model}
    if not args.dataset and not args.golden:
        args.golden = True
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError("--limit must be at least 1")
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        model = tvt.load(args.model)
        graph.check_model(model)
        report["arch"] = model.config.get("arch")
        images = labels = None
        if args.dataset:
            from sw.data import load_dataset
            inp = model.config["input"]
            images, labels = load_dataset(args.dataset, "test", args.data_dir,
                                          img_size=inp["H"], in_chans=inp["C"])
            if args.limit:
                images, labels = images[:args.limit], labels[:args.limit]
            graph.check_images(model, images)
    except FileNotFoundError as e:
        print(f"sw.ref: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # FormatError, DatasetError, shape mismatch
        print(f"sw.ref: error: {e}", file=sys.stderr)
        return 2
    status = 0
    if args.golden:
        if model.golden is None:
            print("sw.ref: error: the model has no golden vectors", file=sys.stderr)
            return 2
        gi, go = model.golden
        out = graph.run(model, gi, batch_size=args.batch_size)
        mismatches = int((out != go).any(axis=1).sum())
        report.update(golden_vectors=len(gi), golden_mismatches=mismatches, golden_bit_exact=mismatches == 0)
        print(f"golden: {len(gi) - mismatches}/{len(gi)} bit-exact")
        status = 1 if mismatches else 0
    if images is not None:
        t0 = time.perf_counter()
        logits = graph.run(model, images, batch_size=args.batch_size, progress=not args.quiet)
        seconds = time.perf_counter() - t0
        acc = float((logits.argmax(axis=1) == np.asarray(labels)).mean())
        report.update(dataset=args.dataset, images=len(images), top1=round(acc, 6),
                      seconds=round(seconds, 3), images_per_s=round(len(images) / seconds, 1))
        print(f"{args.dataset}: integer top-1 {100 * acc:.2f} % on {len(images)} images "
              f"({len(images) / seconds:.0f} images/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
