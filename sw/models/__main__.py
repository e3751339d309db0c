"""`python -m sw.models [NAME ...] [--json]`: list the registered models with their sizes."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from .registry import UnknownModelError, create_model, list_models, model_config


def describe(name: str) -> dict:
    """A flat description of a registered model (parameters counted without allocating them)."""
    cfg = model_config(name)
    with torch.device("meta"):
        model = create_model(cfg.name)
    c, h, w = cfg.input_size
    return {"name": cfg.name, "family": cfg.family, "input": f"{c}x{h}x{w}",
            "params": sum(p.numel() for p in model.parameters()),
            "quant_points": sum(1 for _ in model.quant_points()),
            "mean": list(cfg.mean), "std": list(cfg.std), "kwargs": cfg.kwargs}


def flat(row: dict) -> dict:
    """The row with its constructor kwargs merged in (tuples as lists), for --json."""
    out = {k: v for k, v in row.items() if k != "kwargs"}
    out.update({k: list(v) if isinstance(v, tuple) else v for k, v in row["kwargs"].items()})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sw.models",
        description="List the models that sw.models.create_model knows (timm names and the "
                    "project's Fashion-MNIST models), with input size and parameter count.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="models to show (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of flat objects (constructor kwargs merged in)")
    args = parser.parse_args(argv)
    try:
        rows = [describe(n) for n in (args.names or list_models())]
    except UnknownModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([flat(r) for r in rows], indent=1))
        return 0
    print(f"{'name':32} {'family':6} {'input':10} {'params':>12} {'qps':>5}  config")
    for r in rows:
        kw = ", ".join(f"{k}={v}" for k, v in r["kwargs"].items())
        print(f"{r['name']:32} {r['family']:6} {r['input']:10} {r['params']:>12,} {r['quant_points']:>5}  {kw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
