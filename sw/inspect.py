"""`python -m sw.inspect model.tvt [--json out.json]`: what a .tvt file holds.

Per ternary layer: shape, weights, zero-trit fraction, bits per weight as stored in the file
(trits; with their scales m0/shift; with every per-channel number, bias too) and as the board
holds them (5 trits a byte); totals by kind of section and the file size.
Exit codes: 0 ok, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


CATEGORIES = (("trits", lambda n: n.startswith("lin/") and n.endswith("/trits")),
              ("channel params", lambda n: n.startswith("lin/")),
              ("op params", lambda n: n.startswith("op/")),
              ("constants", lambda n: n.startswith("const/")),
              ("input table", lambda n: n == "input_table"),
              ("golden", lambda n: n.startswith("golden/")),
              ("config", lambda n: n == "config"))


def inspect(path) -> dict:
    """Layer and size statistics of a .tvt file (raises FormatError / OSError)."""
    from sw.tvt.container import read_file
    from sw.tvt.model import from_sections
    sections, infos = read_file(path)  # the file is read and decoded once
    model = from_sections(sections)
    size = {i.name: i.length for i in infos}          # bytes in the file
    decoded = {i.name: i.size for i in infos}         # bytes once decoded (trits: 5 a byte)

    def bits(nbytes, n):
        return round(8 * nbytes / max(n, 1), 4)

    layers = []
    for layer in model.linear_layers():
        p = f"lin/{layer.name}/"
        n = layer.K * layer.O
        layers.append({"name": layer.name, "K": layer.K, "O": layer.O, "weights": n,
                       "zero_fraction": round(float((layer.trits == 0).mean()), 4),
                       "trit_bytes": size[p + "trits"], "packed_trit_bytes": decoded[p + "trits"],
                       "scale_bytes": size[p + "m0"] + size[p + "shift"],
                       "bias_bytes": size[p + "bias"]})
    totals = {k: sum(l[k] for l in layers)
              for k in ("weights", "trit_bytes", "packed_trit_bytes", "scale_bytes", "bias_bytes")}
    for l in [*layers, totals]:
        n = l["weights"]
        l.update({"bits_per_weight": bits(l["trit_bytes"], n),
                  "bits_per_weight_with_scales": bits(l["trit_bytes"] + l["scale_bytes"], n),
                  "bits_per_weight_with_params": bits(l["trit_bytes"] + l["scale_bytes"] + l["bias_bytes"], n),
                  "bits_per_weight_packed": bits(l["packed_trit_bytes"], n)})
    by_cat = {}
    for name, length in size.items():
        cat = next((c for c, test in CATEGORIES if test(name)), "other")
        by_cat[cat] = by_cat.get(cat, 0) + length
    zeros = sum(l["zero_fraction"] * l["weights"] for l in layers)
    report = {"file": str(path), "arch": model.config.get("arch"), "graph": model.config["graph"].get("kind"),
              "file_bytes": os.path.getsize(path), "decoded_bytes": sum(decoded.values()),
              "sections": len(infos), "sections_compressed": sum(i.encoding != "raw" for i in infos),
              "multiplier_bits": model.config.get("packer", {}).get("multiplier_bits"),
              "linear_layers": len(layers), "zero_fraction": round(zeros / max(totals["weights"], 1), 4),
              **totals, "golden": 0 if model.golden is None else len(model.golden[0])}
    report.update({f"bytes_{k.replace(' ', '_')}": v for k, v in by_cat.items()})
    report["layers"] = layers
    return report


def format_table(r: dict) -> str:
    rows = [f"{r['file']}: {r['arch']} ({r['graph']}), {r['file_bytes']:,} bytes "
            f"({r['file_bytes'] / 1e6:.3f} MB, {r['file_bytes'] / 2**20:.3f} MiB; "
            f"{r['decoded_bytes']:,} decoded), {r['sections']} sections "
            f"({r['sections_compressed']} deflated), {r['golden']} golden vectors, "
            f"m0 with {r['multiplier_bits']} significant bits",
            "bits per weight in the file: trits, + scales (m0, shift), + bias; on the board: 5 trits a byte",
            f"{'layer':<40} {'K':>6} {'O':>6} {'weights':>10} {'zeros':>6} {'trits':>7} "
            f"{'+scales':>8} {'+bias':>7} {'board':>6}"]

    def row(name, l, K="", O=""):
        return (f"{name:<40} {K:>6} {O:>6} {l['weights']:>10,} {l['zero_fraction']:>6.3f} "
                f"{l['bits_per_weight']:>7.3f} {l['bits_per_weight_with_scales']:>8.3f} "
                f"{l['bits_per_weight_with_params']:>7.3f} {l['bits_per_weight_packed']:>6.3f}")
    rows += [row(l["name"], l, l["K"], l["O"]) for l in r["layers"]]
    rows.append(row("total", r))
    rows.append("bytes in the file: " + ", ".join(f"{k[6:].replace('_', ' ')} {v:,}" for k, v in r.items()
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
