"""`python -m sw.deploy` end to end on the simulated ULX3S-12F, and its exit codes."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import boards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def deploy(*args, timeout=600):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sw.deploy", "--quiet", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r, time.monotonic() - t0


@pytest.fixture(scope="module")
def vit_tvt(tmp_path_factory):
    """The demo architecture, randomly initialised and packed by the real packer (with 4
    golden vectors computed by the reference)."""
    path = tmp_path_factory.mktemp("deploy") / "vit.tvt"
    r = subprocess.run([sys.executable, "-m", "sw.pack", "--arch", "vit-fmnist", "--init",
                        "random", "--golden", "4", "-o", str(path)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    if r.returncode:
        pytest.skip(f"sw.pack unavailable: {r.stderr.strip()[-200:]}")
    return path


def test_unknown_board_exit_2(vit_tvt):
    r, _ = deploy("--board", "ulx3s-99f", vit_tvt)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "ulx3s-12f" in r.stderr and "icebreaker" in r.stderr


def test_missing_and_malformed_file_exit_2(tmp_path):
    r, _ = deploy("--board", "ulx3s-12f", tmp_path / "none.tvt")
    assert r.returncode == 2 and "no such file" in r.stderr
    bad = tmp_path / "bad.tvt"
    bad.write_bytes(os.urandom(300))
    r, _ = deploy("--board", "ulx3s-12f", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_model_too_large_exit_2_with_excess(vit_tvt, tmp_path):
    from sw.tvt import load
    channels = sum(l.O for l in load(vit_tvt).linear_layers())
    limit = boards.get("icebreaker").accel["param_channels"]
    out = tmp_path / "r.json"
    r, t = deploy("--board", "icebreaker", "--port", "sim", vit_tvt, "--json", out)
    assert r.returncode == 2
    assert f"{channels - limit} too many" in r.stderr
    assert t < 30                                   # refused before any simulator starts
    rep = json.loads(out.read_text())
    assert rep["bit_exact"] is False and rep["exit_code"] == 2


def test_bad_arguments_exit_2(vit_tvt, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 28, 28), np.uint8))          # 3 channels, model takes 1
    r, _ = deploy("--board", "ulx3s-12f", "--npy", wrong, vit_tvt)
    assert r.returncode == 2 and "expected uint8 images" in r.stderr
    assert deploy("--board", "ulx3s-12f", "--port", "/dev/null", "--sim-faults", "0.1,0.1",
                  vit_tvt)[0].returncode == 2
    assert deploy("--board", "ulx3s-12f", "--sim-faults", "x", vit_tvt)[0].returncode == 2
    assert deploy("--board", "ulx3s-12f", "--images", "0", vit_tvt)[0].returncode == 2
    assert deploy("--board", "ulx3s-12f", "--images", "99", vit_tvt)[0].returncode == 2


@pytest.mark.sim
def test_deploy_sim_bit_exact(vit_tvt, tmp_path):
    out = tmp_path / "r.json"
    r, _ = deploy("--board", "ulx3s-12f", "--port", "sim", vit_tvt, "--images", "1", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    for key in ("bit_exact", "images", "mismatches", "board", "port", "cycles", "retries",
                "seconds"):
        assert key in rep
    assert rep["bit_exact"] is True and rep["mismatches"] == 0 and rep["logit_mismatches"] == 0
    assert rep["images"] == 1 and rep["board"] == "ulx3s-12f" and rep["port"].startswith("sim:")
    assert rep["layers"] == rep["layers_bit_exact"] == 18
    assert rep["cycles"] > 0 and rep["projected_seconds"] > 0
    assert all(not isinstance(v, (dict, list)) for v in rep.values())       # flat
    assert "bit-exact: yes" in r.stdout


@pytest.mark.sim
@pytest.mark.slow
def test_deploy_with_faults_still_bit_exact(vit_tvt, tmp_path):
    out = tmp_path / "r.json"
    r, _ = deploy("--board", "ulx3s-12f", "--port", "sim", vit_tvt, "--images", "1",
                  "--sim-faults", "0.0001,0.0001", "--seed", "5", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["bit_exact"] is True and rep["retries"] > 0


def _harness_processes(seed):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"tervit_board") and b"--seed" in cmd and \
                cmd[cmd.index(b"--seed") + 1] == str(seed).encode():
            found.append(int(pid))
    return found


@pytest.mark.sim
def test_deploy_dead_link_exit_3_bounded(vit_tvt, tmp_path):
    out = tmp_path / "r.json"
    r, t = deploy("--board", "ulx3s-12f", "--port", "sim", vit_tvt, "--sim-faults", "0.5,0.5",
                  "--seed", "424242", "--retries", "4", "--json", out)
    assert r.returncode == 3, r.stderr
    assert "link failure" in r.stderr and "Traceback" not in r.stderr
    assert t < 120
    assert json.loads(out.read_text())["exit_code"] == 3
    assert _harness_processes(424242) == []


@pytest.mark.sim
def test_scheduler_records_mismatch(vit_tvt):
    """A layer described with the wrong output zero point on the device: the scheduler must
    count its mismatches and say where the first one is."""
    from sw.runtime.device import Device
    from sw.runtime.link import Link
    from sw.runtime.scheduler import Scheduler
    from sw.runtime.simboard import SimBoard
    from sw.tvt import load
    model = load(vit_tvt)
    images = model.golden[0][:1]
    with SimBoard(boards.get("ulx3s-12f")) as sim, Link.open(sim.url, timing=sim.timing) as link:
        sched = Scheduler(Device(link), model)
        sched.upload()
        head = sched.placements["head"]
        layer = sched.layers["head"]
        sched.device.set_layer(head.slot, layer.K, layer.O, head.weight_base, head.param_base,
                               layer.out_zp + 1)
        logits = sched.run(images)
    reps = {r.name: r for r in sched.layer_reports()}
    assert all(r.bit_exact for n, r in reps.items() if n != "head")
    assert reps["head"].mismatches > 0
    fm = reps["head"].first_mismatch
    assert fm["device"] != fm["reference"] and (fm["token"], fm["channel"]) >= (0, 0)
    assert not np.array_equal(logits, model.golden[1][:1])
