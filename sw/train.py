"""Progressive ternary training: full precision -> W8A8 -> ternary weights + int8 activations.

    python -m sw.train --arch vit-fmnist --dataset fashion-mnist --schedule progressive --out runs/demo
    torchrun --nproc_per_node 2 -m sw.train ...        # distributed data parallel (gloo / nccl)

Writes OUT/fp.pt, OUT/int8.pt, OUT/ternary.pt (``load_checkpoint`` reads them back into a
prepared model), OUT/metrics.json (per epoch), OUT/summary.json (per stage) and PNG plots.
See docs/training.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sw import quant
from sw.data import DatasetError, load_dataset, num_classes_of
from sw.train_loop import (Dist, calibrate, evaluate, param_groups, setup_distributed, shard_batches,
                           train_epoch, warmup_cosine)

CHECKPOINT_FORMAT = "tervit-checkpoint"
CHECKPOINT_VERSION = 1
SCHEDULES = {"progressive": ("fp", "int8", "ternary"), "direct": ("fp", "ternary")}
STAGE_WEIGHTS = {"fp": "fp", "int8": "int8", "ternary": "ternary"}
STAGE_ACTS = {"fp": False, "int8": True, "ternary": True}
# Defaults sized for the demo (vit-fmnist on 2 CPU cores in about 10 minutes).
DEFAULT_STAGE_EPOCHS = {"fp": 6, "int8": 2, "ternary": 4}


class UsageError(ValueError):
    """A user mistake (bad name, wrong checkpoint, ...): one line, exit code 2."""


# --------------------------------------------------------------------------- checkpoints
def _read_torch_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-torch files
        raise UsageError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: expected a dict (state_dict or checkpoint), got {type(obj).__name__}")
    return obj


def state_dict_of(obj: dict) -> dict:
    """The state_dict inside a checkpoint: ours, timm/DeiT ('model', 'state_dict') or a bare one."""
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    sd = {k.removeprefix("module."): v for k, v in obj.items()}
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError("checkpoint holds no state_dict of tensors")
    return sd


def load_state(model: nn.Module, sd: dict, source: str, allow_new_head: bool = False):
    """Strict load with a one-line error; a head of another class count is re-initialised if allowed."""
    own = model.state_dict()
    if allow_new_head:
        dropped = [k for k in sd if k.startswith("head.") and k in own and sd[k].shape != own[k].shape]
        if dropped:
            sd = {k: v for k, v in sd.items() if k not in dropped}
            print(f"note: {source}: head has another number of classes; it starts fresh", file=sys.stderr)
            sd.update({k: own[k] for k in dropped})
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise UsageError(f"{source} does not match the architecture: {', '.join(parts)}")
    model.load_state_dict(sd, strict=True)


def build_model(arch: str, num_classes: int | None = None) -> nn.Module:
    """A fresh float model of a registered architecture (UsageError for unknown names)."""
    from sw.models import UnknownModelError, create_model, model_config
    try:
        cfg = model_config(arch)
    except UnknownModelError as e:
        raise UsageError(str(e)) from None
    kwargs = {}
    if num_classes is not None and num_classes != cfg.kwargs.get("num_classes", 1000):
        kwargs["num_classes"] = num_classes
    return create_model(arch, **kwargs)


def load_checkpoint(path, map_location="cpu"):
    """A stage checkpoint written by ``sw.train`` -> ``(model, info)``.

    The model is built for ``info["arch"]``, prepared with ``info["quant"]`` (weights mode,
    acts, granularity, scope), loaded strictly and put in eval mode; its QuantPoints carry
    the trained ``scale`` / ``zero_point`` and its QuantLinear / QuantConv2d layers give
    ``ternary_weights()``. ``info`` holds arch, stage, quant, num_classes, mean, std,
    dataset, epoch, complete and test_acc. Raises UsageError (a ValueError) on a bad file.
    """
    obj = _read_torch_file(path)
    if obj.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path}: not a sw.train checkpoint (a bare state_dict goes to --init)")
    info = {k: v for k, v in obj.items() if k not in ("state_dict", "optimizer", "scheduler", "metrics")}
    model = build_model(info["arch"], info["num_classes"])
    q = info["quant"]
    if q["weights"] != "fp" or q["acts"]:
        quant.prepare(model, weights=q["weights"], acts=q["acts"], granularity=q["granularity"],
                      scope=q["scope"])
    load_state(model, obj["state_dict"], str(path))
    model.to(map_location).eval()
    return model, info


# --------------------------------------------------------------------------- statistics
def ternary_stats(model: nn.Module):
    """Per ternary layer: (name, fraction of zero trits); and all per-channel alphas."""
    layers, alphas = [], []
    for name, m in quant.quant_layers(model):
        if m.mode == "ternary":
            trits, alpha = m.ternary_weights()
            layers.append((name, float((trits == 0).float().mean())))
            alphas.append(alpha.numpy())
    return layers, (np.concatenate(alphas) if alphas else np.zeros(0))


# --------------------------------------------------------------------------- the run
def parse_stage_epochs(text: str | None, epochs: int | None, stages) -> dict:
    if text:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise UsageError(f"--stage-epochs wants integers like 6,2,4, got {text!r}") from None
        if len(values) != len(stages) or min(values) < 0:
            raise UsageError(f"--stage-epochs needs {len(stages)} non-negative numbers "
                             f"({','.join(stages)}), got {text!r}")
        return dict(zip(stages, values))
    if epochs is not None:
        if epochs < 0:
            raise UsageError("--epochs must be >= 0")
        return {s: epochs for s in stages}
    return {s: DEFAULT_STAGE_EPOCHS[s] for s in stages}


def _check_resumable(ckpt: dict, path, arch: str, stage: str) -> dict:
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("arch") != arch or ckpt.get("stage") != stage:
        raise UsageError(f"{path}: a checkpoint of {ckpt.get('arch')}/{ckpt.get('stage')}, not {arch}/{stage}; "
                         f"use another --out or drop --resume")
    return ckpt


def _save(obj: dict, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def run(args, dist: Dist) -> dict:
    """Train every stage of ``args.schedule``; returns the summary (written by rank 0)."""
    from sw.models import model_config

    stages = SCHEDULES[args.schedule]
    stage_epochs = parse_stage_epochs(args.stage_epochs, args.epochs, stages)
    try:
        cfg = model_config(args.arch)
    except Exception as e:
        raise UsageError(str(e)) from None
    in_chans, img_size, _ = cfg.input_size
    out = Path(args.out)
    num_classes = num_classes_of(args.dataset, args.data_dir)
    info_print = (lambda *a: print(*a, file=sys.stderr)) if dist.main else (lambda *a: None)

    torch.manual_seed(args.seed)
    model = build_model(args.arch, num_classes)
    if args.init:
        load_state(model, state_dict_of(_read_torch_file(args.init)), args.init, allow_new_head=True)
    if args.resume:  # refuse foreign checkpoints before any work
        for stage in stages:
            if (out / f"{stage}.pt").is_file():
                _check_resumable(_read_torch_file(out / f"{stage}.pt"), out / f"{stage}.pt", args.arch, stage)
    tr_x, tr_y = load_dataset(args.dataset, "train", args.data_dir, img_size, in_chans)
    te_x, te_y = load_dataset(args.dataset, "test", args.data_dir, img_size, in_chans)
    if args.train_subset:
        tr_x, tr_y = tr_x[:args.train_subset], tr_y[:args.train_subset]
    if args.test_subset:
        te_x, te_y = te_x[:args.test_subset], te_y[:args.test_subset]
    tr_x, tr_y = torch.from_numpy(tr_x), torch.from_numpy(tr_y)
    te_x, te_y = torch.from_numpy(te_x), torch.from_numpy(te_y)
    mean, std = cfg.mean, cfg.std
    info_print(f"{args.arch}: {args.dataset} {len(tr_x)} train / {len(te_x)} test images, "
               f"stages {', '.join(f'{s}:{stage_epochs[s]}' for s in stages)} epochs, "
               f"{dist.world} process(es) on {dist.device}")

    model.to(dist.device)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(vars(args), indent=1) + "\n")

    metrics: list[dict] = []
    summary: dict = {}
    teacher = None
    for stage in stages:
        qset = {"weights": STAGE_WEIGHTS[stage], "acts": STAGE_ACTS[stage] and not args.no_act_quant,
                "granularity": args.granularity, "scope": args.ternary_scope}
        fresh_quant = qset["acts"] and not any(q for _, q in quant.act_quantizers(model))
        if qset["weights"] != "fp" or qset["acts"]:
            quant.prepare(model, **qset)
        ckpt_path = out / f"{stage}.pt"
        start_epoch, resumed = 0, None
        if args.resume and ckpt_path.is_file():
            resumed = _check_resumable(_read_torch_file(ckpt_path), ckpt_path, args.arch, stage)
            load_state(model, resumed["state_dict"], str(ckpt_path))
            metrics = list(resumed.get("metrics", []))
            start_epoch = resumed["epoch"]
        elif fresh_quant and args.calib_batches:
            calibrate(model, tr_x, mean, std, dist, args.calib_batches, seed=args.seed)

        epochs = stage_epochs[stage]
        steps = len(shard_batches(len(tr_x), args.batch_size, 0, args.seed, dist, args.steps_per_epoch))
        total = max(1, steps * epochs)
        lr = args.lr if stage == "fp" else args.lr_quant
        train_model = model
        if dist.world > 1:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, warmup_cosine(total, min(total // 2, max(1, int(args.warmup * steps)))))
        if resumed is not None and resumed.get("optimizer") and start_epoch < epochs:
            opt.load_state_dict(resumed["optimizer"])
            sched.load_state_dict(resumed["scheduler"])
        use_teacher = teacher if (args.distill and stage != "fp") else None
        seconds = sum(m["seconds"] for m in metrics if m["stage"] == stage)
        images = sum(m["images"] for m in metrics if m["stage"] == stage)
        if start_epoch == 0 and resumed is None:
            te_loss, te_acc = evaluate(model, te_x, te_y, mean, std, dist)
            metrics.append({"stage": stage, "epoch": 0, "test_loss": te_loss, "test_acc": te_acc,
                            "train_loss": None, "train_acc": None, "lr": None, "seconds": 0.0,
                            "images": 0, "images_per_s": None})
            info_print(f"[{stage}] start: test acc {te_acc:.4f}")
        for epoch in range(start_epoch + 1, epochs + 1):
            batches = shard_batches(len(tr_x), args.batch_size, epoch, args.seed, dist, args.steps_per_epoch)
            tl, ta, n, sec = train_epoch(train_model, opt, sched, tr_x, tr_y, batches, mean, std, dist,
                                         teacher=use_teacher, kd_weight=args.distill_weight,
                                         desc=f"{stage} {epoch}/{epochs}", progress=not args.quiet,
                                         grad_clip=args.grad_clip)
            te_loss, te_acc = evaluate(model, te_x, te_y, mean, std, dist)
            seconds, images = seconds + sec, images + n
            row = {"stage": stage, "epoch": epoch, "train_loss": tl, "train_acc": ta,
                   "test_loss": te_loss, "test_acc": te_acc, "lr": opt.param_groups[0]["lr"],
                   "seconds": sec, "images": n, "images_per_s": n / sec if sec else None}
            metrics.append(row)
            info_print(f"[{stage}] epoch {epoch}/{epochs}: train loss {tl:.4f} acc {ta:.4f} | "
                       f"test loss {te_loss:.4f} acc {te_acc:.4f} | {n / max(sec, 1e-9):.0f} img/s")
            if dist.main:
                _save(_checkpoint(model, args, stage, qset, num_classes, cfg, epoch, epochs, te_acc,
                                  metrics, opt, sched), ckpt_path)
                (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        last = [m for m in metrics if m["stage"] == stage][-1]
        if dist.main:
            _save(_checkpoint(model, args, stage, qset, num_classes, cfg, epochs, epochs, last["test_acc"],
                              metrics, None, None), ckpt_path)
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        summary[stage] = {"test_acc": last["test_acc"], "test_loss": last["test_loss"],
                          "train_acc": last["train_acc"], "train_loss": last["train_loss"],
                          "epochs": epochs, "seconds": round(seconds, 2), "images": images,
                          "images_per_s": round(images / seconds, 1) if seconds else None,
                          "checkpoint": str(ckpt_path)}
        if stage == "ternary":
            layers, _ = ternary_stats(model)
            summary[stage]["zero_trit_fraction"] = (sum(z for _, z in layers) / len(layers)) if layers else None
        if stage == "fp" and args.distill:
            teacher = build_model(args.arch, num_classes)
            teacher.load_state_dict(model.state_dict())
            teacher.to(dist.device).eval().requires_grad_(False)
    if dist.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        if not args.no_plots:
            _plots(model, metrics, out)
    return summary


def _checkpoint(model, args, stage, qset, num_classes, cfg, epoch, epochs, test_acc, metrics, opt, sched):
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "arch": args.arch, "stage": stage,
            "quant": dict(qset), "num_classes": num_classes, "mean": list(cfg.mean), "std": list(cfg.std),
            "dataset": args.dataset, "epoch": epoch, "epochs": epochs, "complete": epoch >= epochs and opt is None,
            "test_acc": test_acc, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "metrics": metrics, "optimizer": opt.state_dict() if opt else None,
            "scheduler": sched.state_dict() if sched else None}


def _plots(model, metrics, out: Path):
    from sw.train_plots import plot_alpha_hist, plot_curves, plot_zero_fraction
    plot_curves(metrics, out / "curves.png")
    layers, alphas = ternary_stats(model)
    if layers:
        plot_zero_fraction(layers, out / "zero_trits.png")
        plot_alpha_hist(alphas, out / "alpha_hist.png")


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sw.train",
        description="Progressive channel-wise ternary training (fp -> W8A8 -> ternary). "
                    "Run under torchrun for distributed data parallel.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", default="vit-fmnist", help="model name (sw.models registry or timm name)")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | imagefolder:PATH | synthetic")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST idx(.gz) files")
    p.add_argument("--out", required=True, help="output folder: checkpoints, metrics, summary, plots")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="progressive",
                   help="progressive: fp -> int8 -> ternary; direct: fp -> ternary")
    p.add_argument("--epochs", type=int, help="epochs of every stage (default per stage: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_STAGE_EPOCHS.items()) + ")")
    p.add_argument("--stage-epochs", help="epochs per stage, comma-separated in stage order, e.g. 6,2,4")
    p.add_argument("--steps-per-epoch", type=int, help="cap on optimizer steps per epoch")
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument("--test-subset", type=int, help="use only the first N test images")
    p.add_argument("--granularity", choices=("channel", "layer"), default="channel",
                   help="ternary scale per output channel (TerViT) or per layer (ablation)")
    p.add_argument("--ternary-scope", choices=("all", "blocks"), default="all",
                   help="all: every linear layer; blocks: patch embedding and head stay full precision")
    p.add_argument("--no-act-quant", action="store_true", help="keep activations in float (weights only)")
    p.add_argument("--distill", action="store_true", help="knowledge distillation from the fp stage model")
    p.add_argument("--distill-weight", type=float, default=0.5, help="weight of the KD term")
    p.add_argument("--init", help="initial float weights: a timm/DeiT state_dict or a sw.train checkpoint")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (split over processes)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the fp stage")
    p.add_argument("--lr-quant", type=float, default=5e-4, help="peak learning rate of the int8/ternary stages")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up length in epochs")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    p.add_argument("--calib-batches", type=int, default=8, help="batches to calibrate activation ranges")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="CPU threads per process (1 is fastest on a busy machine)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("batch_size", "steps_per_epoch", "train_subset", "test_subset", "threads"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            print(f"error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    dist = setup_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        t0 = time.perf_counter()
        summary = run(args, dist)
        if dist.main:
            if args.json:
                print(json.dumps(summary))
            else:
                print(f"done in {time.perf_counter() - t0:.0f} s: " + ", ".join(
                    f"{s} {v['test_acc']:.4f}" for s, v in summary.items()) + f" (test accuracy); {args.out}")
        return 0
    except (UsageError, DatasetError) as e:
        if dist.main:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
