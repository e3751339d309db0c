"""Benchmark the host <-> board link and throughput of `sw.deploy` on the simulated ULX3S.

    python scripts/bench_deploy.py [--model model.tvt] [--images 20] [--boards ulx3s,ulx3s-12f]
                                   [--frame-bytes 1024] [--json build/bench_deploy.json]

For each board it starts the simulated board (Verilator, sw.runtime.simboard), uploads the
model and runs the images with every ternary linear layer on the device, checking each output
bit for bit against sw.ref (as sw.deploy does), and measures:

- link efficiency of the weight upload: weight words + parameter records (the data the board
  stores) / every byte on the line in both directions while uploading (frame headers, CRCs,
  addresses, SET_LAYER and the replies included);
- link efficiency of inference: activations sent + results received / every byte on the line
  while running (RUN headers and replies, SET_LAYER re-descriptions, the CYCLES reads);
- images/s on the simulated board (wall clock, host reference ops included);
- projected images/s on the real board: array cycles at its clock + line bytes at its baud
  (10 bits a byte), and the same with 1 ms of USB-UART latency per command round trip.

Without --model it uses /tmp/demo.tvt if present, else packs a randomly initialised vit-fmnist
(link and cycle numbers do not depend on the weights).  Results: a table on stdout, the JSON
file, and by hand the `## Deploy` section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEMO = "/tmp/demo.tvt"
USB_LATENCY_S = 1e-3        # FT231X with latency_timer = 1 ms (Linux default is 16 ms)


def line_bytes(stats) -> int:
    return stats.bytes_in + stats.bytes_out


def snapshot(link):
    from sw.runtime.link import LinkStats
    return LinkStats(**asdict(link.stats))


def delta(a, b) -> dict:
    """Counters of b minus a."""
    return {k: getattr(b, k) - getattr(a, k) for k in asdict(a)}


def bench_board(board_name: str, model, images, labels, expected, frame_bytes: int,
                batch: int, quiet: bool) -> dict:
    """Upload and run `model` on the simulated `board_name`; the measurements as a flat dict."""
    import boards
    from tqdm import tqdm
    from sw.runtime.device import Device, pack_weight_words
    from sw.runtime.link import Link
    from sw.runtime.scheduler import Scheduler
    from sw.runtime.simboard import SimBoard

    board = boards.get(board_name)
    layers = model.linear_layers()
    t_build = time.monotonic()
    sim = SimBoard(board)
    sim.binary()                                    # build (cached) before timing anything
    t_build = time.monotonic() - t_build
    with sim, Link.open(sim.url, timing=sim.timing) as link:
        dev = Device(link, frame_bytes=frame_bytes)
        info = dev.hello()
        s0 = snapshot(link)
        t0 = time.monotonic()
        sched = Scheduler(dev, model)
        sched.upload()
        upload_s = time.monotonic() - t0
        s1 = snapshot(link)
        busy0 = dev.cycles()[0]
        s2 = snapshot(link)
        logits = np.empty((len(images), int(model.config["num_classes"])), np.int8)
        t0 = time.monotonic()
        for i in tqdm(range(0, len(images), batch), desc=f"run {board_name}", unit="batch",
                      disable=quiet, file=sys.stderr, leave=False):
            logits[i:i + batch] = sched.run(images[i:i + batch])
        run_s = time.monotonic() - t0
        s3 = snapshot(link)
        busy = dev.cycles()[0] - busy0
    up, inf = delta(s0, s1), delta(s2, s3)

    # the data the board keeps: packed weight words and 9-byte (bias, m0, shift) records
    weight_bytes = sum(len(pack_weight_words(l.trits, info.P, info.L)) for l in layers)
    param_bytes = sum(9 * l.O for l in layers)
    reps = sched.layer_reports()
    act_in = sum(r.tokens * r.K for r in reps)
    act_out = sum(r.tokens * r.O for r in reps)
    up_line = up["bytes_in"] + up["bytes_out"]
    inf_line = inf["bytes_in"] + inf["bytes_out"]
    n = len(images)
    run_cycles = sum(r.cycles for r in reps)
    mism = sum(r.mismatches for r in reps)
    logit_mism = int(np.count_nonzero(logits != expected))
    res = dict(
        board=board.name, P=info.P, L=info.L, clock_hz=board.clock_hz, baud=board.baud,
        frame_bytes=dev.payload_limit, images=n, sim_build_s=round(t_build, 1),
        bit_exact=bool(mism == 0 and logit_mism == 0), mismatches=int(mism),
        logit_mismatches=logit_mism,
        upload_payload_bytes=weight_bytes + param_bytes, upload_weight_bytes=weight_bytes,
        upload_param_bytes=param_bytes, upload_line_bytes=up_line, upload_frames=up["frames"],
        upload_efficiency=round((weight_bytes + param_bytes) / up_line, 4),
        upload_seconds_sim=round(upload_s, 2),
        upload_projected_s=round(up_line * 10 / board.baud, 4),
        run_payload_bytes=act_in + act_out, run_act_in_bytes=act_in, run_act_out_bytes=act_out,
        run_line_bytes=inf_line, run_frames=inf["frames"],
        run_efficiency=round((act_in + act_out) / inf_line, 4),
        runs=sum(r.runs for r in reps), retries=up["retries"] + inf["retries"],
        cycles=int(busy), run_cycles=int(run_cycles), cycles_per_image=round(busy / n),
        line_bytes_per_image=round(inf_line / n), frames_per_image=round(inf["frames"] / n, 1),
        run_seconds_sim=round(run_s, 2), images_per_s_sim=round(n / run_s, 3),
    )
    if labels is not None:
        res["accuracy"] = round(float(np.mean(logits.argmax(1) == labels)), 4)
    proj = busy / board.clock_hz + inf_line * 10 / board.baud
    res.update(
        projected_seconds_per_image=round(proj / n, 6),
        projected_images_per_s=round(n / proj, 2),
        projected_link_share=round(inf_line * 10 / board.baud / proj, 3),
        projected_images_per_s_usb_1ms=round(n / (proj + inf["frames"] * USB_LATENCY_S), 2),
    )
    return res


def load_inputs(model, n: int, dataset: str | None):
    """(images, labels or None, expected logits) for the benchmark."""
    from sw.ref import graph
    if dataset:
        from sw.data import load_dataset
        inp = model.config["input"]
        images, labels = load_dataset(dataset, "test", img_size=inp["H"], in_chans=inp["C"])
        images, labels = images[:n], labels[:n]
    else:
        rng = np.random.default_rng(0)
        inp = model.config["input"]
        images = rng.integers(0, 256, (n, inp["C"], inp["H"], inp["W"]), dtype=np.uint8)
        labels = None
    return images, labels, graph.run(model, images)


def format_table(rows: list[dict]) -> str:
    head = (f"{'board':<11}{'imgs':>5}{'upload eff':>12}{'run eff':>9}{'bytes/img':>11}"
            f"{'cycles/img':>12}{'img/s sim':>11}{'proj img/s':>12}{'+1ms USB':>10}  bit-exact")
    out = [head]
    for r in rows:
        out.append(f"{r['board']:<11}{r['images']:>5}{100 * r['upload_efficiency']:>11.1f}%"
                   f"{100 * r['run_efficiency']:>8.1f}%{r['line_bytes_per_image']:>11,}"
                   f"{r['cycles_per_image']:>12,}{r['images_per_s_sim']:>11.2f}"
                   f"{r['projected_images_per_s']:>12.1f}{r['projected_images_per_s_usb_1ms']:>10.1f}"
                   f"  {'yes' if r['bit_exact'] else 'NO'}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help=f".tvt model (default {DEMO} if present, else a random "
                                    "vit-fmnist)")
    ap.add_argument("--images", type=int, default=20, help="images to run (default 20)")
    ap.add_argument("--dataset", default="fashion-mnist",
                    help="images from this dataset's test split (default fashion-mnist; "
                         "'none': random uint8 images)")
    ap.add_argument("--boards", default="ulx3s,ulx3s-12f",
                    help="simulated boards to measure (default ulx3s,ulx3s-12f)")
    ap.add_argument("--frame-bytes", type=int, default=1024,
                    help="largest payload per frame (sw.deploy's default 1024)")
    ap.add_argument("--batch", type=int, default=16, help="images per graph run (default 16)")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench_deploy.json"),
                    help="write the results here (default build/bench_deploy.json)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.images < 1:
        ap.error("--images must be positive")

    import boards
    names = [b.strip() for b in args.boards.split(",") if b.strip()]
    for name in names:
        try:
            boards.get(name)
        except boards.UnknownBoardError as e:
            print(f"bench_deploy: error: {e}", file=sys.stderr)
            return 2
    from sw.tvt import load
    path = args.model or (DEMO if os.path.exists(DEMO) else None)
    if path is None:
        path = os.path.join(tempfile.mkdtemp(prefix="bench_deploy."), "vit.tvt")
        subprocess.run([sys.executable, "-m", "sw.pack", "--arch", "vit-fmnist", "--init",
                        "random", "-o", path], check=True, cwd=ROOT)
    try:
        model = load(path)
    except (OSError, ValueError) as e:
        print(f"bench_deploy: error: {path}: {e}", file=sys.stderr)
        return 2
    dataset = None if args.dataset == "none" else args.dataset
    images, labels, expected = load_inputs(model, args.images, dataset)
    print(f"model {path} ({model.config['arch']}), {len(images)} images "
          f"({dataset or 'random'}), frames of <= {args.frame_bytes} bytes", file=sys.stderr)
    rows = [bench_board(b.strip(), model, images, labels, expected, args.frame_bytes,
                        args.batch, args.quiet) for b in names]
    print(format_table(rows))
    result = dict(model=path, arch=model.config["arch"], dataset=dataset,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  load_average=round(os.getloadavg()[0], 2), results=rows)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
