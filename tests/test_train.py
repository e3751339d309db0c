"""sw.train: the CLI end to end on the synthetic dataset, resume, torchrun, bad inputs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sw import quant, train
from sw.data import load_dataset, normalize
from sw.models import create_model

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--dataset", "synthetic", "--test-subset", "128", "--batch-size", "64", "--calib-batches", "2",
        "--quiet", "--lr", "3e-3", "--lr-quant", "1e-3", "--threads", "1"]
TINY = FAST + ["--train-subset", "256"]  # for runs that check mechanics, not accuracy


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "sw.train", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = cli("--arch", "vit-fmnist", "--out", out, "--stage-epochs", "2,1,1", "--distill", *FAST)
    assert r.returncode == 0, r.stderr
    return out


def test_cli_writes_checkpoints_summary_metrics_plots(trained):
    for name in ("fp.pt", "int8.pt", "ternary.pt", "summary.json", "metrics.json", "curves.png",
                 "zero_trits.png", "alpha_hist.png"):
        assert (trained / name).is_file(), name
    summary = json.loads((trained / "summary.json").read_text())
    assert list(summary) == ["fp", "int8", "ternary"]
    metrics = json.loads((trained / "metrics.json").read_text())
    assert [(m["stage"], m["epoch"]) for m in metrics] == [
        ("fp", 0), ("fp", 1), ("fp", 2), ("int8", 0), ("int8", 1), ("ternary", 0), ("ternary", 1)]
    # well above chance (10 %) after 64 small steps (about 0.5 here)
    assert summary["fp"]["test_acc"] > 0.3 and summary["ternary"]["test_acc"] > 0.3
    assert 0 < summary["ternary"]["zero_trit_fraction"] < 1


def test_load_checkpoint_reproduces_the_reported_accuracy(trained):
    summary = json.loads((trained / "summary.json").read_text())
    x, y = load_dataset("synthetic", "test")
    x, y = x[:128], y[:128]
    for stage in ("fp", "int8", "ternary"):
        model, info = train.load_checkpoint(trained / f"{stage}.pt")
        assert info["stage"] == stage and info["arch"] == "vit-fmnist" and info["complete"]
        with torch.no_grad():
            acc = (model(normalize(x, info["mean"], info["std"])).argmax(-1).numpy() == y).mean()
        assert acc == pytest.approx(summary[stage]["test_acc"], abs=1e-9)
    layers = quant.quant_layers(model)
    assert len(layers) == 4 * 4 + 2 and all(m.mode == "ternary" for _, m in layers)
    trits, alpha = dict(layers)["blocks.0.attn.qkv"].ternary_weights()
    assert trits.shape == (192, 64) and set(trits.unique().tolist()) <= {-1, 0, 1}
    qps = quant.act_quantizers(model)
    assert all(q.scale.item() > 0 for _, q in qps)
    assert dict(qps)["blocks.0.attn.qp_softmax"].zero_point.item() == -128


def test_resume_continues_after_the_last_epoch(trained, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    before = json.loads((out / "metrics.json").read_text())
    r = cli("--arch", "vit-fmnist", "--out", out, "--stage-epochs", "2,1,2", "--resume", "--distill", *FAST)
    assert r.returncode == 0, r.stderr
    after = json.loads((out / "metrics.json").read_text())
    assert after[:len(before)] == before  # finished stages are not trained again
    assert [(m["stage"], m["epoch"]) for m in after[len(before):]] == [("ternary", 2)]
    assert json.loads((out / "summary.json").read_text())["ternary"]["epochs"] == 2


def test_direct_layerwise_blocks_scope_and_init(tmp_path):
    init = tmp_path / "init.pth"
    torch.save(create_model("vit-fmnist").state_dict(), init)  # a bare (timm-style) state_dict
    r = cli("--arch", "vit-fmnist", "--out", tmp_path / "o", "--schedule", "direct", "--epochs", "1",
            "--granularity", "layer", "--ternary-scope", "blocks", "--init", init, "--no-plots", "--json", *TINY)
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)) == ["fp", "ternary"]
    model, info = train.load_checkpoint(tmp_path / "o" / "ternary.pt")
    assert info["quant"] == {"weights": "ternary", "acts": True, "granularity": "layer", "scope": "blocks"}
    assert model.head.mode == "fp" and model.patch_embed.proj.mode == "fp"
    _, alpha = model.blocks[0].mlp.fc1.ternary_weights()
    assert torch.all(alpha == alpha[0])


def test_torchrun_two_processes(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "sw.train",
                        "--arch", "vit-fmnist", "--out", str(tmp_path), "--stage-epochs", "1,1,1",
                        "--no-plots", *TINY], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # each process takes 32 of the 64 images per step; the reported count is the global one
    assert [m["images"] for m in metrics if m["epoch"] == 1] == [256, 256, 256]
    model, info = train.load_checkpoint(tmp_path / "ternary.pt")
    assert info["complete"]


def _one_line_exit_2(code, err):
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_unknown_arch_through_the_real_cli(tmp_path):
    r = cli("--arch", "resnet50", "--dataset", "synthetic", "--out", tmp_path)
    assert "unknown model 'resnet50'" in _one_line_exit_2(r.returncode, r.stderr)


@pytest.mark.parametrize("args, expect", [
    (["--arch", "vit_huge"], "unknown model 'vit_huge'"),
    (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "apt-get install dataset-fashion-mnist"),
    (["--dataset", "cifar10"], "unknown dataset"),
    (["--dataset", "imagefolder:/nonexistent"], "does not exist"),
    (["--stage-epochs", "1,2"], "--stage-epochs needs 3"),
    (["--stage-epochs", "1,x,2"], "--stage-epochs wants integers"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--init", "/nonexistent.pth"], "does not exist"),
])
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, args, expect):
    base = {"--arch": "vit-fmnist", "--dataset": "synthetic", "--out": str(tmp_path), "--quiet": None}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = [x for k, v in base.items() for x in ((k,) if v is None else (k, v))]
    code = train.main(argv)
    assert expect in _one_line_exit_2(code, capsys.readouterr().err)


def test_init_of_another_architecture_exits_2(tmp_path, capsys):
    wrong = tmp_path / "swin.pth"
    torch.save(create_model("swin-fmnist").state_dict(), wrong)
    code = train.main(["--arch", "vit-fmnist", "--init", str(wrong), "--out", str(tmp_path / "o"), *TINY])
    assert "does not match the architecture" in _one_line_exit_2(code, capsys.readouterr().err)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    code = train.main(["--arch", "vit-fmnist", "--init", str(junk), "--out", str(tmp_path / "o"), *TINY])
    assert "not a readable torch checkpoint" in _one_line_exit_2(code, capsys.readouterr().err)


def test_resume_refuses_a_checkpoint_of_another_arch(trained, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(trained, out)
    code = train.main(["--arch", "swin-fmnist", "--out", str(out), "--resume", *TINY])
    assert "not swin-fmnist/fp" in _one_line_exit_2(code, capsys.readouterr().err)


def test_load_checkpoint_rejects_bare_state_dict(tmp_path):
    p = tmp_path / "bare.pth"
    torch.save(create_model("vit-fmnist").state_dict(), p)
    with pytest.raises(ValueError, match="not a sw.train checkpoint"):
        train.load_checkpoint(p)


def test_bench_writes_only_its_markdown_section(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "scripts" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    md = tmp_path / "benchmarks.md"
    bench.write_section(md, "first\n")
    assert md.read_text() == "# Benchmarks\n\n## Training\n\nfirst\n"
    md.write_text("# Benchmarks\n\n## Hardware\n\nLUTs\n\n## Training\n\nold\n\n## Reference\n\nfast\n")
    bench.write_section(md, "new\n")
    assert md.read_text() == "# Benchmarks\n\n## Hardware\n\nLUTs\n\n## Training\n\nnew\n\n## Reference\n\nfast\n"
