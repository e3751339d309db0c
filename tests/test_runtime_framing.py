"""sw.runtime.framing against docs/protocol.md: layout, CRC, round trips, corruption, resync."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from sw.runtime import framing as fr


def crc32_bitwise(data: bytes) -> int:
    """Independent CRC-32 (reflected, poly 0xEDB88320, init/xorout 0xFFFFFFFF)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc_check_value():
    assert fr.crc32(b"123456789") == 0xCBF43926 == crc32_bitwise(b"123456789")


def test_frame_layout_by_hand():
    frame = fr.encode(0x12, fr.RUN, b"\x01\x02\x03")
    body = bytes([3, 0, 0x12, 0x05, 1, 2, 3])
    assert frame == b"\xa5\x5a" + body + struct.pack("<I", crc32_bitwise(body))
    assert len(fr.encode(0, fr.HELLO)) == fr.OVERHEAD == 10


def test_useful_bytes_above_90_percent():
    assert 1024 / (1024 + fr.OVERHEAD) > 0.9


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=600))
def test_round_trip(seq, cmd, payload):
    frame = fr.encode(seq, cmd, payload)
    assert fr.decode(frame) == fr.Frame(seq, cmd, payload)
    d = fr.Decoder()
    got = []
    for i in range(0, len(frame), 7):                  # fed in pieces
        got += d.feed(frame[i:i + 7])
    assert got == [fr.Frame(seq, cmd, payload)]


def test_every_single_bit_flip_is_detected():
    frame = fr.encode(7, fr.WRITE_PARAMS, bytes(range(40)))
    for i in range(2, len(frame)):                     # sync flips are not frames at all
        for bit in range(8):
            bad = bytearray(frame)
            bad[i] ^= 1 << bit
            with pytest.raises(ValueError):
                fr.decode(bytes(bad))
            assert fr.Decoder().feed(bytes(bad)) == []


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300).filter(lambda g: fr.SYNC not in g),
       st.lists(st.binary(max_size=50), min_size=1, max_size=4))
def test_resync_after_garbage(garbage, payloads):
    frames = [fr.Frame(i, fr.RUN, p) for i, p in enumerate(payloads)]
    stream = b"".join(f.encode() for f in frames)
    d = fr.Decoder(max_payload=64)
    got = d.feed(garbage + stream)
    assert got == frames


def test_false_sync_is_cleared_by_reset():
    """A false frame start whose LEN runs past the data waits; the receive timeout (reset)
    drops it and the next frame decodes."""
    d = fr.Decoder()
    assert d.feed(b"\xa5\x5a\x40\x00" + fr.encode(1, fr.HELLO)) == []
    d.reset()
    assert d.feed(fr.encode(2, fr.HELLO)) == [fr.Frame(2, fr.HELLO)]


def test_damaged_frame_then_good_frame():
    good = fr.encode(1, fr.HELLO)
    bad = bytearray(fr.encode(2, fr.RUN, b"xyz"))
    bad[7] ^= 0x10
    d = fr.Decoder()
    assert d.feed(bytes(bad) + good) == [fr.Frame(1, fr.HELLO)]
    assert d.crc_errors >= 1


def test_oversize_length_is_skipped():
    d = fr.Decoder(max_payload=16)
    big = fr.encode(1, fr.RUN, bytes(17))
    small = fr.encode(2, fr.RUN, bytes(16))
    assert d.feed(big + small) == [fr.Frame(2, fr.RUN, bytes(16))]
    assert d.oversize == 1


def test_bytes_needed_tracks_frame():
    frame = fr.encode(3, fr.RUN, bytes(20))
    d = fr.Decoder()
    assert fr.bytes_needed(d) == 6
    d.feed(frame[:6])
    assert fr.bytes_needed(d) == len(frame) - 6
    d.feed(frame[6:10])
    assert fr.bytes_needed(d) == len(frame) - 10


def test_decode_rejects_bad_frames():
    with pytest.raises(ValueError, match="at least"):
        fr.decode(b"\xa5\x5a")
    with pytest.raises(ValueError, match="LEN"):
        fr.decode(fr.encode(0, 1, b"ab") + b"x")
    with pytest.raises(ValueError):
        fr.encode(256, 1)
    with pytest.raises(ValueError):
        fr.encode(0, 1, bytes(70000))


def test_hello_matches_gateware_config():
    cfg = pytest.importorskip("hw.config")
    c = cfg.sim_config(build_id=0x12345678)
    rec = c.hello_record()
    assert len(rec) == 42
    h = fr.Hello.unpack(rec)
    assert (h.protocol_version, h.P, h.L, h.slots, h.weight_words, h.param_channels, h.max_k,
            h.max_o, h.max_tokens, h.max_payload, h.clock_hz, h.baud, h.rx_timeout_us,
            h.build_id) == tuple(c.hello_fields()[:14])
    assert h.pack() == rec
    assert h.word_bytes == c.word_bytes


def test_payload_builders():
    assert fr.set_layer_payload(3, 300, 70, 0x01020304, 513, -5) == \
        bytes([3, 0x2C, 0x01, 70, 0, 4, 3, 2, 1, 0x01, 0x02, 0xFB])
    p = fr.write_params_payload(2, [-1], [0x40000000], [-3])
    assert p == b"\x02\x00" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x40" + b"\xfd"
    assert fr.run_payload(1, 2, b"\x01\x02") == b"\x01\x02\x00\x01\x02"
    assert fr.unpack_cycles(struct.pack("<QI", 2**40 + 5, 77)) == (2**40 + 5, 77)
    assert fr.Frame(9, fr.ERROR, bytes([fr.ERR_BAD_SLOT, fr.RUN])).error() == (4, 5)
