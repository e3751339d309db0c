"""The inner parts of ``sw.train``: distributed setup, batches, optimizer, one epoch, evaluation."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sw.data import normalize


@dataclass
class Dist:
    """Where this process runs: rank / world size (1 without torchrun) and its device."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Initialise torch.distributed under torchrun (gloo on CPU, nccl on CUDA); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        if local_world > 1:  # share the cores between the processes of this machine
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, dev)


def all_reduce_sum(values: list[float], dist: Dist) -> list[float]:
    """Sum a few numbers over all processes (identity in a single process)."""
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def shard_batches(n: int, batch: int, epoch: int, seed: int, dist: Dist, max_steps: int | None):
    """Index batches of one epoch for this rank: a seeded permutation shared by all ranks,
    split round-robin, ``batch // world`` per rank and step, last partial batch dropped."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    perm = torch.randperm(n, generator=g)[dist.rank::dist.world]
    per_rank = max(1, batch // dist.world)
    steps = len(perm) // per_rank
    if max_steps:
        steps = min(steps, max_steps)
    return [perm[i * per_rank:(i + 1) * per_rank] for i in range(steps)]


def param_groups(model: nn.Module, weight_decay: float):
    """AdamW groups: no weight decay on biases, norms, position embedding and class token."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) or "relative_position" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float = 0.01):
    """LambdaLR factor: linear warm-up to 1, then cosine decay to ``min_ratio``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor


def kd_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            weight: float = 0.5, temperature: float = 1.0) -> torch.Tensor:
    """(1 - weight) * cross entropy + weight * T^2 * KL(teacher || student) at temperature T."""
    ce = F.cross_entropy(logits, labels)
    kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                  reduction="batchmean", log_target=True)
    return (1 - weight) * ce + weight * temperature ** 2 * kl


def to_input(images_u8: torch.Tensor, mean, std, device) -> torch.Tensor:
    return normalize(images_u8, mean, std).to(device, non_blocking=True)


def train_epoch(model, optimizer, scheduler, images, labels, batches, mean, std, dist: Dist,
                teacher=None, kd_weight=0.5, desc="", progress=True, grad_clip=None):
    """One pass over ``batches``; returns global (mean loss, accuracy, images, seconds)."""
    model.train()
    loss_sum = correct = count = 0.0
    t0 = time.perf_counter()
    bar = tqdm(batches, desc=desc, leave=False, disable=not (progress and dist.main), unit="step")
    for idx in bar:
        x = to_input(images[idx], mean, std, dist.device)
        y = labels[idx].to(dist.device)
        logits = model(x)
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(x)
            loss = kd_loss(logits, t_logits, y, kd_weight)
        else:
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += float((logits.argmax(-1) == y).sum())
        count += len(idx)
        bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}")
    seconds = time.perf_counter() - t0
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], dist)
    return loss_sum / max(count, 1), correct / max(count, 1), int(count), seconds


@torch.no_grad()
def evaluate(model, images, labels, mean, std, dist: Dist, batch: int = 500):
    """Global (mean loss, accuracy) over ``images``; each rank takes every world-th batch."""
    model.eval()
    loss_sum = correct = count = 0.0
    starts = list(range(0, len(images), batch))[dist.rank::dist.world]
    for s in starts:
        x = to_input(images[s:s + batch], mean, std, dist.device)
        y = labels[s:s + batch].to(dist.device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(-1) == y).sum())
        count += len(y)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], dist)
    return loss_sum / max(count, 1), correct / max(count, 1)


@torch.no_grad()
def calibrate(model, images, mean, std, dist: Dist, batches: int = 8, batch: int = 256, seed: int = 0):
    """Set the activation observers' ranges from float activations (fake quant off) on a few batches."""
    from sw.quant import ActQuantizer, act_quantizers, set_observers
    observers = [q for _, q in act_quantizers(model) if isinstance(q, ActQuantizer)]
    saved = [q.momentum for q in observers]
    set_observers(model, observe=True, enabled=False)
    model.train()
    g = torch.Generator().manual_seed(seed)
    for i in range(batches):
        for q in observers:  # running mean of the batch ranges
            q.momentum = 1.0 / (i + 1)
        idx = torch.randint(0, len(images), (batch,), generator=g)
        model(to_input(images[idx], mean, std, dist.device))
    for q, m in zip(observers, saved):
        q.momentum = m
    set_observers(model, observe=True, enabled=True)
