"""The host runtime against the simulated board: the real top level (hw.top) of ulx3s-12f in
Verilator behind a pty or a TCP socket.  Outputs are compared with sw.ref.ops bit for bit."""
import os
import time

import numpy as np
import pytest

import boards
from sw.runtime import framing as fr
from sw.runtime.device import Device, pack_weight_words, tokens_per_run
from sw.runtime.link import DeviceError, Link, LinkError
from sw.runtime.simboard import LOOPBACK, SimBoard

pytestmark = pytest.mark.sim
BOARD = boards.get("ulx3s-12f")


def ref_ops():
    return pytest.importorskip("sw.ref.ops")


# ---- the harness alone, around a one-flop loopback ---------------------------------------

@pytest.mark.parametrize("transport", ["pty", "tcp"])
def test_harness_loopback(transport):
    import serial
    data = os.urandom(3000)
    with SimBoard(verilog=LOOPBACK.read_text(), transport=transport) as sim:
        port = serial.serial_for_url(sim.url, timeout=0.05)
        port.write(data)
        got, t0 = b"", time.monotonic()
        while len(got) < len(data) and time.monotonic() - t0 < 10:
            got += port.read(len(data) - len(got))
        port.close()
        pid = sim.proc.pid
    assert got == data
    assert sim.stats()["bytes_in"] == sim.stats()["bytes_out"] == len(data)
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)


def _is_zombie_or_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_harness_faults_flip_and_drop():
    import serial
    data = bytes(range(256)) * 4
    with SimBoard(verilog=LOOPBACK.read_text(), drop=1.0) as sim:
        port = serial.serial_for_url(sim.url, timeout=0.3)
        port.write(data)
        assert port.read(len(data)) == b""          # every byte dropped
        port.close()
    with SimBoard(verilog=LOOPBACK.read_text(), flip=1.0, seed=7) as sim:
        port = serial.serial_for_url(sim.url, timeout=0.3)
        port.write(data)
        got = b""
        while len(got) < len(data):
            chunk = port.read(len(data) - len(got))
            if not chunk:
                break
            got += chunk
        port.close()
    # one bit flipped on the way in and one on the way out: 0 or 2 bits differ, mostly 2
    diffs = [bin(a ^ b).count("1") for a, b in zip(data, got)]
    assert len(got) == len(data) and set(diffs) <= {0, 2} and diffs.count(2) > len(data) // 2


def test_harness_slow_host_frame_is_not_dropped():
    """The clock stops while a frame is incomplete, so a host pausing mid-frame (longer than the
    board's rx timeout in wall time) still gets its reply."""
    with SimBoard(BOARD) as sim:
        import serial
        port = serial.serial_for_url(sim.url, timeout=2)
        frame = fr.encode(9, fr.HELLO)
        port.write(frame[:4])
        time.sleep(0.25)            # stall limit 0.3 s; the rx timeout, 60k cycles, is far less
        port.write(frame[4:])
        dec = fr.Decoder()
        frames = []
        t0 = time.monotonic()
        while not frames and time.monotonic() - t0 < 5:
            frames = dec.feed(port.read(fr.bytes_needed(dec)))
        port.close()
    assert frames and frames[0].seq == 9 and frames[0].cmd == fr.HELLO | fr.REPLY_BIT


# ---- the real board ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim():
    with SimBoard(BOARD) as s:
        yield s


@pytest.fixture
def dev(sim):
    link = Link.open(sim.url, timing=sim.timing)
    yield Device(link)
    link.close()


def test_hello_pty(dev):
    h = dev.hello()
    assert h.protocol_version == 1
    cfg = BOARD.accel_config(sim=True)
    assert h.pack() == fr.HELLO_FORMAT.pack(*cfg.hello_fields())
    assert h.baud * 4 == h.clock_hz          # the sim baud divisor, reported consistently


def test_hello_tcp():
    with SimBoard(BOARD, transport="tcp") as s:
        assert s.url.startswith("socket://")
        with Link.open(s.url, timing=s.timing) as link:
            h = Device(link).hello()
    assert (h.P, h.L, h.weight_words) == (BOARD.accel["P"], BOARD.accel["L"],
                                          BOARD.accel["weight_words"])


def random_layer(rng, K, O, extreme=False):
    trits = rng.integers(-1, 2, (O, K)).astype(np.int8)
    if extreme:
        trits[0] = 0                          # an all-zero row
        trits[1] = -1
    bias = rng.integers(-20000, 20000, O).astype(np.int32)
    m0 = rng.integers(1 << 30, (1 << 31) - 1, O).astype(np.int32)
    shift = rng.integers(-12, 1, O).astype(np.int32)
    if extreme:
        shift[:2] = 0                         # saturate
    return trits, bias, m0, shift


@pytest.mark.parametrize("K,O,T,extreme", [
    (64, 64, 17, False),      # aligned
    (70, 37, 50, False),      # K not a multiple of L, O not of P
    (1000, 9, 9, True),       # deep, saturating, all-zero row, all -1 row
    (49, 192, 60, False),     # more tokens than one RUN carries (split)
    (3, 2, 1, True),          # tiny
])
def test_upload_and_run_bit_exact(dev, K, O, T, extreme):
    ops = ref_ops()
    rng = np.random.default_rng(K * 1000 + O)
    info = dev.hello()
    trits, bias, m0, shift = random_layer(rng, K, O, extreme)
    x = rng.integers(-128, 128, (T, K)).astype(np.int8)
    if extreme:
        x[0] = -128
    out_zp = int(rng.integers(-20, 20))
    base = int(rng.integers(0, info.weight_words - 1024))
    words = dev.upload_layer(5, trits=trits, bias=bias, m0=m0, shift=shift, out_zp=out_zp,
                             weight_base=base, param_base=int(rng.integers(0, 900)))
    assert words == -(-O // info.P) * -(-K // info.L)
    y = dev.run(5, x)
    ref = ops.ternary_linear(x, trits, bias, m0, shift, out_zp)
    np.testing.assert_array_equal(y, ref)
    if extreme:
        assert y.min() == -128 or y.max() == 127


def test_run_splits_and_counts_cycles(dev):
    ops = ref_ops()
    rng = np.random.default_rng(1)
    trits, bias, m0, shift = random_layer(rng, 128, 64)
    dev.upload_layer(2, trits=trits, bias=bias, m0=m0, shift=shift, out_zp=0,
                     weight_base=0, param_base=0)
    step = tokens_per_run(dev.hello(), 128, 64)
    x = rng.integers(-128, 128, (2 * step + 3, 128)).astype(np.int8)
    busy0 = dev.cycles()[0]
    before = dev.link.stats.frames
    y = dev.run(2, x)
    assert dev.link.stats.frames - before == 3                # three RUN frames
    np.testing.assert_array_equal(y, ops.ternary_linear(x, trits, bias, m0, shift, 0))
    busy, last = dev.cycles()
    # the array needs at least tokens * words cycles for a run
    assert busy - busy0 >= x.shape[0] * (64 // dev.info.P) * (128 // dev.info.L)
    assert last >= 3 * (64 // dev.info.P) * (128 // dev.info.L)


def test_board_errors_are_reported(dev):
    dev.hello()
    with pytest.raises(DeviceError, match="BAD_SLOT"):
        dev.link.transact(fr.RUN, fr.run_payload(200, 1, b"\x00"))
    with pytest.raises(DeviceError, match="UNKNOWN_CMD"):
        dev.link.transact(0x42, b"")
    with pytest.raises(DeviceError, match="OUT_OF_RANGE"):
        dev.set_layer(0, 10, 10, dev.info.weight_words, 0, 0)


def test_pack_weight_words_layout():
    """docs/protocol.md by hand: P=2, L=2: word bits 2*(p*L + l)."""
    trits = np.array([[1, -1, 0], [0, 1, -1], [-1, 0, 0]], np.int8)      # O=3, K=3
    words = pack_weight_words(trits, 2, 2)
    # group 0, chunk 0: (o0,k0)=+1 (o0,k1)=-1 (o1,k0)=0 (o1,k1)=+1 -> 01 11 00 01 -> 0b01001101
    # group 0, chunk 1: (o0,k2)=0 pad (o1,k2)=-1 pad                 -> 00 00 11 00 -> 0b00110000
    # group 1, chunk 0: (o2,k0)=-1 (o2,k1)=0, o3 padding               -> 11 00 00 00 -> 0b00000011
    # group 1, chunk 1: all 0
    assert words == bytes([0b01001101, 0b00110000, 0b00000011, 0])


def test_reset_then_recovery_by_scheduler_style_reupload(sim, dev):
    ops = ref_ops()
    rng = np.random.default_rng(3)
    trits, bias, m0, shift = random_layer(rng, 32, 16)
    dev.upload_layer(1, trits=trits, bias=bias, m0=m0, shift=shift, out_zp=1,
                     weight_base=64, param_base=64)
    x = rng.integers(-128, 128, (4, 32)).astype(np.int8)
    dev.run(1, x)
    sim.reset()
    time.sleep(0.2)
    with pytest.raises(DeviceError, match="BAD_SLOT"):
        dev.run(1, x)
    dev.set_layer(1, 32, 16, 64, 64, 1)       # memories survive reset; the slot table does not
    np.testing.assert_array_equal(dev.run(1, x), ops.ternary_linear(x, trits, bias, m0, shift, 1))


def test_faults_are_retried_bit_exact():
    ops = ref_ops()
    rng = np.random.default_rng(4)
    trits, bias, m0, shift = random_layer(rng, 64, 64)
    x = rng.integers(-128, 128, (256, 64)).astype(np.int8)
    with SimBoard(BOARD, flip=0.0003, drop=0.0002, seed=11) as s:
        with Link.open(s.url, timing=s.timing, retries=12) as link:
            dev = Device(link, frame_bytes=512)
            dev.upload_layer(0, trits=trits, bias=bias, m0=m0, shift=shift, out_zp=0,
                             weight_base=0, param_base=0)
            y = dev.run(0, x)
            stats = link.stats
    np.testing.assert_array_equal(y, ops.ternary_linear(x, trits, bias, m0, shift, 0))
    assert stats.retries > 0
    st = s.stats()
    assert st["flipped"] + st["dropped"] > 0


def test_dead_link_fails_in_bounded_time():
    with SimBoard(BOARD, drop=0.9) as s:
        t0 = time.monotonic()
        with Link.open(s.url, timing=s.timing, retries=3) as link:
            with pytest.raises(LinkError, match="no valid reply after 4 attempts"):
                Device(link).hello()
        assert time.monotonic() - t0 < 10
