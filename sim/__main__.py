"""`python -m sim [BENCH ...]`: run the cocotb benches in Verilator and print a summary.

Benches: units (MAC array, requantizer), top (the whole design through its UART pins).
WAVES=1 writes traces (FST; VCD without lz4.h); JUnit XML goes to build/sim/<bench>/results.xml.
Exit code 0 when every test passed, 1 when any failed, 2 for an unknown bench name.
"""
import argparse
import json
import sys
import time


def main(argv=None) -> int:
    from sim.benches import BENCHES
    ap = argparse.ArgumentParser(prog="python -m sim", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("benches", nargs="*", help=f"benches to run (default: all of {', '.join(BENCHES)})")
    ap.add_argument("--json", metavar="FILE", help="write a flat JSON summary")
    args = ap.parse_args(argv)
    names = args.benches or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"python -m sim: unknown bench {unknown[0]!r} (choose from {', '.join(BENCHES)})",
              file=sys.stderr)
        return 2
    report, failed = {}, 0
    for name in names:
        t0 = time.monotonic()
        try:
            s = BENCHES[name]()
        except Exception as e:  # a build failure: report it as a failed bench
            s = {"tests": 0, "failures": 1, "failed": [f"build: {e}"], "results_xml": ""}
        s["seconds"] = round(time.monotonic() - t0, 1)
        report.update({f"{name}_{k}": v for k, v in s.items() if k != "failed"})
        failed += s["failures"]
        status = "PASS" if s["failures"] == 0 else "FAIL " + ", ".join(s["failed"])
        print(f"[sim] {name:6s} {s['tests']} tests  {status}  ({s['seconds']} s)  {s['results_xml']}")
    report["passed"] = failed == 0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
