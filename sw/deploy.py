"""Run a .tvt model on a board (or the simulated board) and check it bit for bit.

    python -m sw.deploy --board ulx3s [--port auto|sim|/dev/ttyUSB0] model.tvt [--images N]
                        [--dataset fashion-mnist | --npy FILE] [--sim-faults FLIP,DROP]
                        [--json r.json]

Every ternary linear layer runs on the device; everything else runs in the integer reference
(sw.ref); every device output is compared with sw.ref.ops.ternary_linear and the logits with
the reference's.  Exit codes: 0 all bit-exact, 1 outputs differ, 2 bad input (unknown board,
missing or malformed file, model too large), 3 device or link failure.  See docs/deploy.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

EXIT_OK, EXIT_DIFFER, EXIT_INPUT, EXIT_DEVICE = 0, 1, 2, 3


class InputError(Exception):
    """A user mistake: one line, exit 2."""


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m sw.deploy",
        description="Run a .tvt model with every ternary linear layer on an FPGA board (or the "
                    "simulated board) and compare each output with the integer reference.",
        epilog="exit codes: 0 all bit-exact, 1 outputs differ, 2 bad input, 3 device/link failure")
    ap.add_argument("model", help="the .tvt model file")
    ap.add_argument("--board", default="ulx3s",
                    help="board name (ulx3s = ulx3s-85f, ulx3s-12f/25f/45f, icebreaker)")
    ap.add_argument("--port", default="auto",
                    help="auto (an attached board, else the simulated one), sim, sim-tcp, a "
                         "serial device or a pyserial URL such as socket://host:port")
    ap.add_argument("--images", type=int, default=None,
                    help="number of images (default: the golden vectors stored in the model)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="take images from a dataset's test split (fashion-mnist)")
    src.add_argument("--npy", help="take images from a .npy file of uint8 [N, C, H, W]")
    ap.add_argument("--sim-faults", default=None, metavar="FLIP,DROP",
                    help="simulated link: per-byte probability of a flipped bit and of a dropped byte")
    ap.add_argument("--seed", type=int, default=1, help="fault injection seed")
    ap.add_argument("--retries", type=int, default=8, help="re-sends per command (default 8)")
    ap.add_argument("--frame-bytes", type=int, default=1024,
                    help="largest payload per frame (default 1024; the board's max_payload caps it)")
    ap.add_argument("--batch", type=int, default=16, help="images per graph run (default 16)")
    ap.add_argument("--json", metavar="FILE", help="write a flat JSON report")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap.parse_args(argv)


def parse_faults(text: str | None) -> tuple[float, float]:
    if not text:
        return 0.0, 0.0
    try:
        flip, drop = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--sim-faults wants FLIP,DROP probabilities, got {text!r}") from None
    if not (0 <= flip <= 1 and 0 <= drop <= 1):
        raise InputError(f"--sim-faults probabilities must be in [0, 1], got {text!r}")
    return flip, drop


def load_model(path: str):
    from sw.tvt import FormatError, load
    try:
        return load(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (FormatError, OSError) as e:
        raise InputError(f"{path}: {e}") from None


def load_images(args, model):
    """(images uint8 [N, C, H, W], expected logits or None, labels or None, description)."""
    from sw.ref.graph import check_images
    n = args.images
    labels = None
    if n is not None and n <= 0:
        raise InputError(f"--images must be positive, got {n}")
    if args.npy:
        try:
            images = np.load(args.npy, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{args.npy}: {e}") from None
        expected, what = None, args.npy
    elif args.dataset:
        from sw.data import DatasetError, load_dataset
        inp = model.config["input"]
        try:
            images, labels = load_dataset(args.dataset, "test", img_size=inp["H"],
                                          in_chans=inp["C"])
        except DatasetError as e:
            raise InputError(str(e)) from None
        expected, what = None, f"{args.dataset} test"
    else:
        if model.golden is None:
            raise InputError("the model carries no golden vectors: pass --dataset or --npy")
        images, expected = model.golden
        what = "golden vectors"
        if n is not None and n > len(images):
            raise InputError(f"--images {n}: the model carries only {len(images)} golden vectors; "
                             f"use --dataset or --npy for more")
    if n is not None:
        images = images[:n]
        expected = None if expected is None else expected[:n]
        labels = None if labels is None else labels[:n]
    try:
        images = check_images(model, images)
    except ValueError as e:
        raise InputError(str(e)) from None
    return images, expected, labels, what


def find_attached(board) -> str | None:
    """The first serial port whose USB id matches the board's USB-UART, if any."""
    try:
        from serial.tools import list_ports
    except ImportError:
        return None
    for p in list_ports.comports():
        if (p.vid, p.pid) in board.usb_ids:
            return p.device
    return None


def deploy(args) -> dict:
    import boards
    from sw.runtime import device as dv
    from sw.runtime.link import DeviceError, Link, LinkError, Timing
    from sw.runtime.scheduler import ModelTooLarge, Scheduler, plan
    from sw.runtime import framing as fr
    from sw.runtime.simboard import SimBuildError

    try:
        board = boards.get(args.board)
    except boards.UnknownBoardError as e:
        raise InputError(str(e)) from None
    flip, drop = parse_faults(args.sim_faults)
    if args.frame_bytes < 64 or args.retries < 0 or args.batch < 1:
        raise InputError("--frame-bytes must be >= 64, --retries >= 0, --batch >= 1")
    model = load_model(args.model)
    images, expected, labels, what = load_images(args, model)

    # Refuse a model that cannot fit before touching any device.
    cfg = board.accel_config()
    static = fr.Hello(1, *cfg.hello_fields()[1:14])
    try:
        plan(model.linear_layers(), static)
    except ModelTooLarge as e:
        raise InputError(f"{board.name}: {e}") from None

    port = args.port
    sim = None
    note = ""
    if port == "auto":
        port = find_attached(board)
        note = f"found {board.name} at {port}" if port else \
            f"no {board.name} attached: using the simulated {board.name}"
        port = port or "sim"
    if (flip or drop) and not port.startswith("sim"):
        raise InputError("--sim-faults applies to the simulated board only (--port sim)")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    if note:                            # always say which port auto chose
        print(f"sw.deploy: {note}", file=sys.stderr)

    report = dict(board=board.name, model=args.model, images=int(len(images)), image_source=what)
    t_start = time.monotonic()
    try:
        if port in ("sim", "sim-tcp"):
            from sw.runtime.simboard import SimBoard
            log(f"sw.deploy: building/starting the simulated {board.name} (Verilator)")
            sim = SimBoard(board, transport="tcp" if port == "sim-tcp" else "pty",
                           flip=flip, drop=drop, seed=args.seed)
            sim.start()
            link = Link.open(sim.url, timing=sim.timing, retries=args.retries)
            report["port"] = f"sim:{sim.url}"
        else:
            link = Link.open(port, baud=board.baud, retries=args.retries,
                             timing=Timing(byte_s=10 / board.baud * 1.5))
            report["port"] = port
        with link:
            dev = dv.Device(link, frame_bytes=args.frame_bytes)
            info = dev.hello()
            report.update(device_P=info.P, device_L=info.L, device_clock_hz=info.clock_hz,
                          device_baud=info.baud, build_id=f"{info.build_id:#010x}")
            try:
                placements = plan(model.linear_layers(), info)
            except ModelTooLarge as e:
                raise InputError(f"{board.name} ({report['port']}): {e}") from None
            sched = Scheduler(dev, model, placements)
            layers = model.linear_layers()
            bar = _bar(len(layers), "upload", "layer", args.quiet)
            t0 = time.monotonic()
            sched.upload(progress=lambda name: bar.update(1))
            bar.close()
            report["upload_seconds"] = round(time.monotonic() - t0, 3)
            busy0 = dev.cycles()[0]
            bar = _bar(len(images), "run", "img", args.quiet)
            t0 = time.monotonic()
            logits = np.empty((len(images), int(model.config["num_classes"])), np.int8)
            for i in range(0, len(images), args.batch):
                logits[i:i + args.batch] = sched.run(images[i:i + args.batch])
                bar.update(len(images[i:i + args.batch]))
            bar.close()
            run_s = time.monotonic() - t0
            busy = dev.cycles()[0] - busy0
            stats = link.stats
    except LinkError as e:
        raise DeviceFailure(f"link failure: {e}") from None
    except DeviceError as e:
        raise DeviceFailure(f"device error: {e}") from None
    except SimBuildError as e:
        raise DeviceFailure(f"simulated board: {e}") from None
    finally:
        if sim is not None:
            sim.stop()

    if expected is None:
        from sw.ref import graph
        expected = graph.run(model, images)
    logit_mismatch = int(np.count_nonzero(logits != expected))
    layer_reps = sched.layer_reports()
    layer_mism = sum(r.mismatches for r in layer_reps)
    link_bytes = stats.bytes_in + stats.bytes_out
    report.update(
        bit_exact=bool(layer_mism == 0 and logit_mismatch == 0),
        mismatches=int(layer_mism),
        logit_mismatches=logit_mismatch,
        layers=len(layer_reps),
        layers_bit_exact=sum(r.bit_exact for r in layer_reps),
        cycles=int(busy),
        run_cycles=int(sum(r.cycles for r in layer_reps)),
        retries=stats.retries, timeouts=stats.timeouts, crc_error_replies=stats.crc_replies,
        link_bytes=link_bytes, link_bytes_out=stats.bytes_out, link_bytes_in=stats.bytes_in,
        link_seconds=round(stats.seconds, 3),
        run_seconds=round(run_s, 3),
        seconds=round(time.monotonic() - t_start, 3),
        images_per_s=round(len(images) / run_s, 3) if run_s > 0 else None,
        projected_seconds=round(busy / board.clock_hz + link_bytes * 10 / board.baud, 6),
        projected_images_per_s=None,
        board_clock_hz=board.clock_hz, board_baud=board.baud,
        sim_faults=f"{flip},{drop}" if sim else None,
    )
    if labels is not None:
        report["accuracy"] = round(float(np.mean(logits.argmax(axis=1) == labels)), 4)
    if report["projected_seconds"]:
        report["projected_images_per_s"] = round(len(images) / report["projected_seconds"], 2)
    first = next((r for r in layer_reps if r.mismatches), None)
    report["first_mismatch"] = None if first is None else \
        f"{first.name} call {first.first_mismatch['call']} token {first.first_mismatch['token']} " \
        f"channel {first.first_mismatch['channel']}: device {first.first_mismatch['device']} " \
        f"reference {first.first_mismatch['reference']}"
    report["_layers"] = [r.as_dict() for r in layer_reps]
    return report


class DeviceFailure(Exception):
    """The device or the link failed: exit 3."""


def _bar(total, desc, unit, quiet):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, file=sys.stderr, leave=False)


def format_report(r: dict) -> str:
    lines = [f"board {r['board']} on {r['port']}, {r['images']} images ({r['image_source']})",
             f"{'layer':<28}{'K':>6}{'O':>6}{'runs':>7}{'cycles':>12}  bit-exact  mismatches"]
    for l in r["_layers"]:
        lines.append(f"{l['name']:<28}{l['K']:>6}{l['O']:>6}{l['runs']:>7}{l['cycles']:>12}  "
                     f"{'yes' if l['bit_exact'] else 'NO':<9}  {l['mismatches']}")
    lines += [
        f"bit-exact: {'yes' if r['bit_exact'] else 'NO'} ({r['layers_bit_exact']}/{r['layers']} "
        f"layers, {r['mismatches']} output mismatches, {r['logit_mismatches']} logit mismatches)",
    ]
    if r["first_mismatch"]:
        lines.append(f"first mismatch: {r['first_mismatch']}")
    if r.get("accuracy") is not None:
        lines.append(f"top-1 accuracy on these {r['images']} images: {100 * r['accuracy']:.1f} %")
    lines += [
        f"device cycles {r['cycles']:,} (RUNs {r['run_cycles']:,}); link {r['link_bytes']:,} bytes "
        f"in {r['link_seconds']:.2f} s, {r['retries']} retries ({r['timeouts']} timeouts, "
        f"{r['crc_error_replies']} CRC errors)",
        f"{r['images_per_s']} images/s here; projected on the real {r['board']}: "
        f"{r['projected_seconds']:.4f} s = {r['projected_images_per_s']} images/s "
        f"({r['board_clock_hz'] / 1e6:g} MHz, {r['board_baud'] / 1e6:g} Mbaud)",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = deploy(args)
    except InputError as e:
        print(f"sw.deploy: error: {e}", file=sys.stderr)
        _write_json(args.json, dict(bit_exact=False, error=str(e), exit_code=EXIT_INPUT,
                                    board=args.board, port=args.port))
        return EXIT_INPUT
    except DeviceFailure as e:
        print(f"sw.deploy: error: {e}", file=sys.stderr)
        _write_json(args.json, dict(bit_exact=False, error=str(e), exit_code=EXIT_DEVICE,
                                    board=args.board, port=args.port))
        return EXIT_DEVICE
    except KeyboardInterrupt:
        print("sw.deploy: interrupted", file=sys.stderr)
        return 130
    print(format_report(report))
    code = EXIT_OK if report["bit_exact"] else EXIT_DIFFER
    flat = {k: v for k, v in report.items() if not k.startswith("_")}
    flat["exit_code"] = code
    _write_json(args.json, flat)
    return code


def _write_json(path, obj) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
