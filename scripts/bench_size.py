"""Packed sizes of fully ternary DeiT-S and Swin-S (random init), against their budgets.

    python scripts/bench_size.py [--arch NAME ...] [--json out.json]

Each architecture is packed twice in the same run: with sw.pack's defaults (16-bit
multipliers, sections deflated where smaller) and, as the baseline, with `--multiplier-bits 31
--no-compress` (LiteRT's m0, every section raw). Prints a table (bytes, MB, budget, bits per
weight of the trits, with their scales m0/shift, with the bias too) and the ratio to the
baseline. Results go in docs/tvt-format.md ("Sizes") by hand.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BUDGET_MB = {"deit_small_patch16_224": 4.7, "swin_small_patch4_window7_224": 10.5}
VARIANTS = {"default": [], "baseline (31-bit m0, raw)": ["--multiplier-bits", "31", "--no-compress"]}


def measure(arch: str, extra: list[str], folder: Path) -> dict:
    """sw.inspect's report of `arch` packed with random init and the extra sw.pack options."""
    from sw import pack
    from sw.inspect import inspect
    out = folder / f"{arch}.tvt"
    if pack.main(["--arch", arch, "--init", "random", "--calib-images", "1", "--golden", "0",
                  "-o", str(out)] + extra) != 0:
        raise SystemExit(f"bench_size: packing {arch} failed")
    r = inspect(out)
    out.unlink()
    return {k: r[k] for k in ("file_bytes", "weights", "zero_fraction", "bits_per_weight",
                              "bits_per_weight_with_scales", "bits_per_weight_with_params",
                              "bits_per_weight_packed", "sections", "sections_compressed")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="+", default=list(BUDGET_MB), help="registered model names")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            results[arch] = {name: measure(arch, extra, Path(tmp)) for name, extra in VARIANTS.items()}
    print(f"\n{'model':<32} {'variant':<26} {'bytes':>12} {'MB':>7} {'budget':>7} {'trits':>6} "
          f"{'+scales':>7} {'+bias':>6} {'vs baseline':>11}")
    for arch, variants in results.items():
        base = variants["baseline (31-bit m0, raw)"]["file_bytes"]
        for name, r in variants.items():
            r["ratio_to_baseline"] = round(r["file_bytes"] / base, 4)
            budget = BUDGET_MB.get(arch)
            print(f"{arch:<32} {name:<26} {r['file_bytes']:>12,} {r['file_bytes'] / 1e6:>7.3f} "
                  f"{budget if budget else '-':>7} {r['bits_per_weight']:>6.3f} "
                  f"{r['bits_per_weight_with_scales']:>7.3f} {r['bits_per_weight_with_params']:>6.3f} "
                  f"{r['ratio_to_baseline']:>11.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
