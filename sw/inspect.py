"""`python -m sw.inspect model.tvt [--json out.json]`: what a .tvt file holds.

Per ternary layer: shape, weights, zero-trit fraction, stored bits per weight (packed trits,
and with the per-channel bias/m0/shift); totals by kind of section and the file size.
Exit codes: 0 ok, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

CATEGORIES = (("trits", lambda n: n.startswith("lin/") and n.endswith("/trits")),
              ("channel params", lambda n: n.startswith("lin/")),
              ("op params", lambda n: n.startswith("op/")),
              ("constants", lambda n: n.startswith("const/")),
              ("input table", lambda n: n == "input_table"),
              ("golden", lambda n: n.startswith("golden/")),
              ("config", lambda n: n == "config"))


def inspect(path) -> dict:
    """Layer and size statistics of a .tvt file (raises FormatError / OSError)."""
    from sw import tvt
    from sw.tvt.container import read_file
    _, infos = read_file(path)
    model = tvt.load(path)
    size = {i.name: i.length for i in infos}
    layers = []
    for layer in model.linear_layers():
        p = f"lin/{layer.name}/"
        n = layer.K * layer.O
        trit_bytes = size[p + "trits"]
        param_bytes = sum(size[p + k] for k in ("bias", "m0", "shift"))
        layers.append({"name": layer.name, "K": layer.K, "O": layer.O, "weights": n,
                       "zero_fraction": round(float((layer.trits == 0).mean()), 4),
                       "trit_bytes": trit_bytes, "param_bytes": param_bytes,
                       "bits_per_weight": round(8 * trit_bytes / n, 4),
                       "bits_per_weight_with_params": round(8 * (trit_bytes + param_bytes) / n, 4)})
    by_cat = {}
    for name, length in size.items():
        cat = next(c for c, test in CATEGORIES if test(name)) if any(t(name) for _, t in CATEGORIES) else "other"
        by_cat[cat] = by_cat.get(cat, 0) + length
    weights = sum(l["weights"] for l in layers)
    trit_bytes = sum(l["trit_bytes"] for l in layers)
    param_bytes = sum(l["param_bytes"] for l in layers)
    zeros = sum(l["zero_fraction"] * l["weights"] for l in layers)
    report = {"file": str(path), "arch": model.config.get("arch"), "graph": model.config["graph"].get("kind"),
              "file_bytes": os.path.getsize(path), "sections": len(infos),
              "linear_layers": len(layers), "weights": weights,
              "zero_fraction": round(zeros / max(weights, 1), 4),
              "bits_per_weight": round(8 * trit_bytes / max(weights, 1), 4),
              "bits_per_weight_with_params": round(8 * (trit_bytes + param_bytes) / max(weights, 1), 4),
              "golden": 0 if model.golden is None else len(model.golden[0])}
    report.update({f"bytes_{k.replace(' ', '_')}": v for k, v in by_cat.items()})
    report["layers"] = layers
    return report


def format_table(r: dict) -> str:
    rows = [f"{r['file']}: {r['arch']} ({r['graph']}), {r['file_bytes']:,} bytes "
            f"({r['file_bytes'] / 2**20:.3f} MiB), {r['sections']} sections, {r['golden']} golden vectors",
            f"{'layer':<40} {'K':>6} {'O':>6} {'weights':>10} {'zeros':>6} {'bits/w':>7} {'+params':>8}"]
    for l in r["layers"]:
        rows.append(f"{l['name']:<40} {l['K']:>6} {l['O']:>6} {l['weights']:>10,} "
                    f"{l['zero_fraction']:>6.3f} {l['bits_per_weight']:>7.3f} {l['bits_per_weight_with_params']:>8.3f}")
    rows.append(f"{'total':<40} {'':>6} {'':>6} {r['weights']:>10,} {r['zero_fraction']:>6.3f} "
                f"{r['bits_per_weight']:>7.3f} {r['bits_per_weight_with_params']:>8.3f}")
    rows.append("bytes: " + ", ".join(f"{k[6:].replace('_', ' ')} {v:,}" for k, v in r.items()
                                      if k.startswith("bytes_")))
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sw.inspect", description=(
        "Show a .tvt model's ternary layers (shape, zero-trit fraction, bits per weight) and sizes."))
    p.add_argument("model", help="the .tvt file")
    p.add_argument("--json", help="write the report as JSON here ('-' for stdout)")
    args = p.parse_args(argv)
    try:
        report = inspect(args.model)
    except FileNotFoundError as e:
        print(f"sw.inspect: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"sw.inspect: error: {e}", file=sys.stderr)
        return 2
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(format_table(report))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
