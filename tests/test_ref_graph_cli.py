"""`python -m sw.ref` and `python -m sw.inspect`: reports, exit codes, one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from sw import tvt
from sw import inspect as tvt_inspect
from sw.ref import __main__ as ref_cli
from tests._packed_models import packed_fixture


@pytest.fixture(scope="module")
def vit_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "vit.tvt"
    tvt.save(packed_fixture("vit_fmnist")[1], path)
    return path


def test_ref_dataset_and_golden(vit_path, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert ref_cli.main([str(vit_path), "--dataset", "fashion-mnist", "--limit", "50", "--golden",
                         "--json", str(out), "-q"]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 50 and r["golden_bit_exact"] and r["golden_vectors"] == 4
    assert all(not isinstance(v, (dict, list)) for v in r.values())  # flat
    # independent check of the reported accuracy
    from sw.data import load_dataset
    from sw.ref import graph
    x, y = load_dataset("fashion-mnist", "test")
    model = tvt.load(vit_path)
    assert r["top1"] == pytest.approx((graph.run(model, x[:50]).argmax(1) == y[:50]).mean())


def test_ref_golden_mismatch_exits_1(vit_path, tmp_path, capsys):
    m = tvt.load(vit_path)
    m.tensors["golden/outputs"] = m.tensors["golden/outputs"].copy()
    m.tensors["golden/outputs"][1, 0] ^= 1
    bad = tmp_path / "bad_golden.tvt"
    tvt.save(m, bad)
    assert ref_cli.main([str(bad), "--golden"]) == 1
    assert "3/4 bit-exact" in capsys.readouterr().out


@pytest.mark.parametrize("make, args, message", [
    (lambda p: None, ["--golden"], "no such file"),
    (lambda p: p.write_bytes(b"hello"), ["--golden"], "header"),
    (lambda p: p.write_bytes(b"\x89TVT\r\n\x1a\n" + bytes(40)), ["--golden"], "version"),
    ("vit", ["--dataset", "nope"], "unknown dataset"),
    ("vit", ["--dataset", "fashion-mnist", "--limit", "0"], "--limit"),
])
def test_ref_bad_input_exits_2(vit_path, tmp_path, capsys, make, args, message):
    path = vit_path if make == "vit" else tmp_path / "m.tvt"
    if make != "vit":
        make(path)
    assert ref_cli.main([str(path)] + args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_ref_corrupted_file_exits_2(vit_path, tmp_path, capsys):
    data = bytearray(vit_path.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "flip.tvt"
    bad.write_bytes(bytes(data))
    assert ref_cli.main([str(bad)]) == 2
    assert "CRC" in capsys.readouterr().err


def test_inspect_report(vit_path, tmp_path, capsys):
    out = tmp_path / "i.json"
    assert tvt_inspect.main([str(vit_path), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "blocks.1.mlp.fc2" in table and "total" in table
    r = json.loads(out.read_text())
    m = tvt.load(vit_path)
    layers = m.linear_layers()
    assert r["weights"] == sum(l.K * l.O for l in layers)
    assert r["file_bytes"] == vit_path.stat().st_size
    zeros = sum(int((l.trits == 0).sum()) for l in layers) / r["weights"]
    assert r["zero_fraction"] == pytest.approx(zeros, abs=1e-3)
    qkv = next(l for l in r["layers"] if l["name"] == "blocks.0.attn.qkv")
    assert qkv["trit_bytes"] == -(-qkv["K"] * qkv["O"] // 5)  # ceil(n / 5)


def test_inspect_bad_input(tmp_path, capsys):
    assert tvt_inspect.main([str(tmp_path / "missing.tvt")]) == 2
    (tmp_path / "t.tvt").write_bytes(b"\x89TVT\r\n\x1a\n")
    assert tvt_inspect.main([str(tmp_path / "t.tvt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such file" in err[0] and "header" in err[1]


def test_entry_points_subprocess(vit_path):
    for mod in ("sw.ref", "sw.inspect"):
        r = subprocess.run([sys.executable, "-m", mod, str(vit_path) + ".missing"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "sw.ref", str(vit_path), "--golden"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "4/4 bit-exact" in r.stdout
