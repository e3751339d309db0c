"""The .tvt container and model file: round trips, trit packing, and malformed-file fuzzing."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sw import tvt
from sw.tvt import container
from sw.tvt.model import FORMAT_NAME


def tiny_model(rng=np.random.default_rng(0), golden=True):
    C, H, W, K, O = 1, 4, 4, 7, 5
    config = {"format": FORMAT_NAME, "arch": "test", "num_classes": O,
              "input": {"C": C, "H": H, "W": W},
              "linear_layers": [{"name": "fc", "K": K, "O": O, "out_zp": -3, "in_zp": 2}],
              "graph": {}}
    tensors = {
        "input_table": rng.integers(-128, 128, (C, 256), dtype=np.int8),
        "lin/fc/trits": rng.integers(-1, 2, (O, K), dtype=np.int8),
        "lin/fc/bias": rng.integers(-2**31, 2**31, O, dtype=np.int32),
        "lin/fc/m0": rng.integers(2**30, 2**31, O, dtype=np.int32),
        "lin/fc/shift": rng.integers(-31, 31, O, dtype=np.int32),
        "op/ln/table": rng.integers(0, 256, 256, dtype=np.uint8),
        "op/ln/w": rng.integers(-2**15, 2**15, (3, 2), dtype=np.int16),
        # smooth, so it is stored deflated: the fuzz tests below reach the inflater too
        "const/ramp": (np.arange(300, dtype=np.int32) * 7 - 1000),
    }
    if golden:
        tensors["golden/inputs"] = rng.integers(0, 256, (2, C, H, W), dtype=np.uint8)
        tensors["golden/outputs"] = rng.integers(-128, 128, (2, O), dtype=np.int8)
    return tvt.Model(config, tensors)


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("tvt") / "tiny.tvt"
    tvt.save(tiny_model(), path)
    return path.read_bytes()


# -- trits ----------------------------------------------------------------------------------

def test_pack_trits_formula_and_density():
    t = np.array([-1, 0, 1, 1, -1, 0, 1], dtype=np.int8)
    p = tvt.pack_trits(t)
    # independent oracle: value = sum (t_i + 1) * 3^i, last byte padded with trit 0 (digit 1)
    assert p.tolist() == [0 + 1 * 3 + 2 * 9 + 2 * 27 + 0 * 81, 1 + 2 * 3 + 1 * 9 + 1 * 27 + 1 * 81]
    assert p.dtype == np.uint8 and len(tvt.pack_trits(np.zeros(1000, np.int8))) == 200


@given(st.lists(st.integers(-1, 1), max_size=200))
def test_trits_round_trip(values):
    t = np.array(values, dtype=np.int8)
    p = tvt.pack_trits(t)
    assert p.max(initial=0) < 243
    np.testing.assert_array_equal(tvt.unpack_trits(p, len(t)), t)


def test_unpack_rejects_invalid_bytes():
    with pytest.raises(ValueError, match="243"):
        tvt.unpack_trits(np.array([243], np.uint8), 5)
    with pytest.raises(ValueError, match="padding"):
        tvt.unpack_trits(np.array([0], np.uint8), 3)  # padding trits are -1, not 0
    with pytest.raises(ValueError):
        tvt.pack_trits(np.array([2], np.int8))


# -- round trip -----------------------------------------------------------------------------

def test_model_round_trip(tmp_path):
    m = tiny_model()
    path = tmp_path / "m.tvt"
    size = tvt.save(m, path)
    assert size == path.stat().st_size
    back = tvt.load(path)
    assert back.config == m.config
    assert set(back.tensors) == set(m.tensors)
    for k, v in m.tensors.items():
        assert back.tensors[k].dtype == v.dtype, k
        np.testing.assert_array_equal(back.tensors[k], v, err_msg=k)
    (layer,) = back.linear_layers()
    assert (layer.name, layer.K, layer.O, layer.out_zp, layer.in_zp) == ("fc", 7, 5, -3, 2)
    np.testing.assert_array_equal(layer.trits, m.tensors["lin/fc/trits"])
    gi, go = back.golden
    assert gi.shape == (2, 1, 4, 4) and go.shape == (2, 5)
    assert back.input_table.shape == (1, 256)
    assert set(back.op_arrays("ln")) == {"table", "w"}


def test_layout_is_as_documented(tiny_bytes):
    magic, major, minor, hsize, count, table_crc, fsize = struct.unpack_from(
        "<8sHHIIIQ", tiny_bytes)
    assert magic == b"\x89TVT\r\n\x1a\n" and (major, minor, hsize) == (2, 0, 32)
    assert fsize == len(tiny_bytes)
    table = tiny_bytes[32:32 + 120 * count]
    assert zlib.crc32(table) == table_crc
    names = []
    for i in range(count):
        e = table[120 * i:120 * (i + 1)]
        name = e[:64].rstrip(b"\0").decode()
        dtype, ndim, encoding = e[64], e[65], e[66]
        dims = struct.unpack_from("<6I", e, 68)
        offset, length, crc = struct.unpack_from("<QQI", e, 92)
        stored = tiny_bytes[offset:offset + length]
        assert offset % 16 == 0 and zlib.crc32(stored) == crc
        if name == "lin/fc/trits":
            assert (dtype, ndim, dims[:2], encoding, length) == (5, 2, (5, 7), 0, 7)  # 35 trits, 7 bytes
        if name == "lin/fc/bias":
            assert (dtype, dims[0], encoding, length) == (4, 5, 0, 20)
        if name == "const/ramp":  # encoding 1: zlib stream of the byte planes, low bytes first
            assert (dtype, dims[0], encoding) == (4, 300, 1) and length < 1200
            planes = np.frombuffer(zlib.decompress(stored), np.uint8).reshape(4, 300)
            value = sum(planes[i].astype(np.int64) << (8 * i) for i in range(4))
            np.testing.assert_array_equal(value.astype(np.uint32).view(np.int32),
                                          np.arange(300) * 7 - 1000)
        names.append(name)
    assert "config" in names


def test_save_rejects_float_tensors(tmp_path):
    m = tiny_model()
    m.tensors["op/x/f"] = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match="float32"):
        tvt.save(m, tmp_path / "x.tvt")


# -- malformed files ------------------------------------------------------------------------

def load_bytes(tmp_path, data):
    p = tmp_path / "bad.tvt"
    p.write_bytes(data)
    return tvt.load(p)


def patch_header(data, **fields):
    names = ["magic", "major", "minor", "hsize", "count", "table_crc", "fsize"]
    vals = dict(zip(names, struct.unpack_from("<8sHHIIIQ", data)))
    vals.update(fields)
    return struct.pack("<8sHHIIIQ", *[vals[n] for n in names]) + data[32:]


@pytest.mark.parametrize("fields, message", [
    ({"magic": b"NOTATVT!"}, "magic"),
    ({"major": 3}, "version 3"),
    ({"major": 0}, "version 0"),
    ({"hsize": 64}, "header size"),
    ({"fsize": 10**12}, "truncated"),
    ({"count": 2**32 - 1}, "count"),
    ({"count": 5000}, "past the end"),
    ({"table_crc": 0}, "table CRC"),
])
def test_header_errors(tmp_path, tiny_bytes, fields, message):
    with pytest.raises(tvt.FormatError, match=message):
        load_bytes(tmp_path, patch_header(tiny_bytes, **fields))


def rewrite_entry(data, index, **fields):
    """Change fields of section entry `index` and fix the table CRC (so deeper checks run)."""
    off = 32 + 120 * index
    name, dtype, ndim, *rest = container.ENTRY.unpack_from(data, off)
    vals = dict(name=name, dtype=dtype, ndim=ndim, encoding=rest[0], dims=list(rest[1:7]),
                offset=rest[7], length=rest[8], crc=rest[9])
    vals.update(fields)
    entry = container.ENTRY.pack(vals["name"], vals["dtype"], vals["ndim"], vals["encoding"],
                                 *vals["dims"], vals["offset"], vals["length"], vals["crc"])
    data = data[:off] + entry + data[off + 120:]
    count = struct.unpack_from("<I", data, 16)[0]
    return patch_header(data, table_crc=zlib.crc32(data[32:32 + 120 * count]))


def entry_index(data, name):
    count = struct.unpack_from("<I", data, 16)[0]
    for i in range(count):
        if data[32 + 120 * i:32 + 120 * i + 64].rstrip(b"\0") == name.encode():
            return i
    raise KeyError(name)


@pytest.mark.parametrize("fields, message", [
    ({"dims": [2**31, 2**31, 2**31, 2**31, 2**31, 2**31], "ndim": 6}, "absurd"),
    ({"dims": [5, 8, 0, 0, 0, 0]}, "needs"),
    ({"ndim": 7}, "dimension"),
    ({"dtype": 99}, "dtype code"),
    ({"offset": 2**63}, "outside"),
    ({"offset": 0}, "outside"),
    ({"crc": 1}, "CRC"),
    ({"name": b"\xff\xfe"}, "UTF-8"),
    ({"name": b"config"}, "twice"),
])
def test_entry_errors(tmp_path, tiny_bytes, fields, message):
    data = rewrite_entry(tiny_bytes, entry_index(tiny_bytes, "lin/fc/trits"), **fields)
    with pytest.raises(tvt.FormatError, match=message):
        load_bytes(tmp_path, data)


def replace_data(data, name, stored, **fields):
    """Put new stored bytes (same length or shorter) into section `name`, CRC fixed."""
    i = entry_index(data, name)
    offset = container.ENTRY.unpack_from(data, 32 + 120 * i)[10]
    data = data[:offset] + stored + data[offset + len(stored):]
    return rewrite_entry(data, i, length=len(stored), crc=zlib.crc32(stored), **fields)


def deflated_entry(data, name):
    i = entry_index(data, name)
    _, _, _, encoding, *rest = container.ENTRY.unpack_from(data, 32 + 120 * i)
    assert encoding == 1, name
    return rest[6], rest[7]  # offset, length


@pytest.mark.parametrize("make, message", [
    (lambda good: bytes(len(good)), "corrupt deflate"),                        # not a zlib stream
    (lambda good: zlib.compress(bytes(1196))[:len(good)], "exactly"),          # 4 bytes short
    (lambda good: zlib.compress(bytes(1204))[:len(good)], "exactly"),          # 4 bytes too many
    (lambda good: good[:-6] + bytes(6), "deflate"),                            # broken adler/end
])
def test_deflated_section_errors(tmp_path, tiny_bytes, make, message):
    """Stored bytes with a valid CRC that do not inflate to exactly the shape's bytes."""
    offset, length = deflated_entry(tiny_bytes, "const/ramp")
    stored = make(tiny_bytes[offset:offset + length])
    assert len(stored) <= length
    with pytest.raises(tvt.FormatError, match=message):
        load_bytes(tmp_path, replace_data(tiny_bytes, "const/ramp", stored))


@pytest.mark.parametrize("fields, message", [
    ({"dims": [2**28, 0, 0, 0, 0, 0]}, "cannot hold"),  # a deflate bomb is refused before inflating
    ({"encoding": 7}, "encoding"),
])
def test_deflated_entry_errors(tmp_path, tiny_bytes, fields, message):
    data = rewrite_entry(tiny_bytes, entry_index(tiny_bytes, "const/ramp"), **fields)
    with pytest.raises(tvt.FormatError, match=message):
        load_bytes(tmp_path, data)


def test_version_1_files_are_read_and_hold_only_raw_sections(tmp_path):
    raw = tmp_path / "raw.tvt"
    tvt.save(tiny_model(), raw, compress=False)
    v1 = patch_header(raw.read_bytes(), major=1)
    back = load_bytes(tmp_path, v1)
    np.testing.assert_array_equal(back.tensors["const/ramp"], tiny_model().tensors["const/ramp"])
    packed = tmp_path / "packed.tvt"
    tvt.save(tiny_model(), packed)
    with pytest.raises(tvt.FormatError, match="encoding"):
        load_bytes(tmp_path, patch_header(packed.read_bytes(), major=1))


@given(st.integers(0, 50), st.sampled_from([1, 2, 4]), st.binary(min_size=200, max_size=200))
def test_shuffle_round_trip(n, itemsize, blob):
    data = blob[:n * itemsize]
    assert container.unshuffle(container.shuffle(data, itemsize), itemsize) == data


def test_compression_is_lossless_and_smaller(tmp_path):
    m = tiny_model()
    m.tensors["lin/fc/m0"] = np.full(5, 3 << 29, np.int32)
    sizes = {}
    for compress in (True, False):
        path = tmp_path / f"{compress}.tvt"
        sizes[compress] = tvt.save(m, path, compress=compress)
        _, infos = container.read_file(path)
        assert {i.encoding for i in infos} == ({"raw", "shuffle+deflate"} if compress else {"raw"})
        back = tvt.load(path)
        for k, v in m.tensors.items():
            np.testing.assert_array_equal(back.tensors[k], v, err_msg=k)
    assert sizes[True] < sizes[False]


def test_overlapping_sections(tmp_path, tiny_bytes):
    i, j = entry_index(tiny_bytes, "lin/fc/m0"), entry_index(tiny_bytes, "lin/fc/shift")
    off_j = container.ENTRY.unpack_from(tiny_bytes, 32 + 120 * j)[10]
    data = rewrite_entry(tiny_bytes, i, offset=off_j)
    with pytest.raises(tvt.FormatError, match="overlap"):
        load_bytes(tmp_path, data)


def test_semantic_errors(tmp_path):
    m = tiny_model()
    m.tensors["lin/fc/bias"] = m.tensors["lin/fc/bias"][:3]
    with pytest.raises(tvt.FormatError, match="lin/fc/bias"):
        tvt.Model(m.config, m.tensors)
    tvt.container.write_sections(tmp_path / "a.tvt", {"config": {"format": "other"}})
    with pytest.raises(tvt.FormatError, match="config"):
        tvt.load(tmp_path / "a.tvt")
    tvt.container.write_sections(tmp_path / "b.tvt", {"x": np.zeros(2, np.int8)})
    with pytest.raises(tvt.FormatError, match="config"):
        tvt.load(tmp_path / "b.tvt")


def test_every_truncation_is_a_format_error(tiny_bytes):
    for n in range(len(tiny_bytes)):
        with pytest.raises(tvt.FormatError):
            container.read_sections(tiny_bytes[:n])


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_flipped_bytes_are_format_errors(tiny_bytes, data):
    buf = bytearray(tiny_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] ^= data.draw(st.integers(1, 255))
    try:
        sections, _ = container.read_sections(bytes(buf))
    except tvt.FormatError:
        return
    # A flip can only go unnoticed in bytes no check covers: entry padding, alignment gaps.
    assert sections["config"] == tiny_model().config


@FUZZ
@given(data=st.data())
def test_flipped_table_bytes_with_fixed_crc_are_format_errors(tiny_bytes, data):
    """Entry corruption that the table CRC would catch, re-CRC'd so the field checks must."""
    count = struct.unpack_from("<I", tiny_bytes, 16)[0]
    buf = bytearray(tiny_bytes)
    pos = 32 + data.draw(st.integers(0, 120 * count - 1))
    buf[pos] ^= data.draw(st.integers(1, 255))
    buf = patch_header(bytes(buf), table_crc=zlib.crc32(bytes(buf[32:32 + 120 * count])))
    try:
        container.read_sections(buf)
    except tvt.FormatError:
        pass


@FUZZ
@given(blob=st.binary(max_size=400))
def test_random_bytes_are_format_errors(blob):
    with pytest.raises(tvt.FormatError):
        container.read_sections(container.MAGIC + blob)


@FUZZ
@given(count=st.integers(1, 2**32 - 1), dims=st.lists(st.integers(0, 2**32 - 1), min_size=6, max_size=6),
       ndim=st.integers(0, 255), dtype=st.integers(0, 255), encoding=st.integers(0, 255),
       offset=st.integers(0, 2**64 - 1), length=st.integers(0, 2**64 - 1))
def test_absurd_entries_are_format_errors(count, dims, ndim, dtype, encoding, offset, length):
    entry = container.ENTRY.pack(b"x", dtype, ndim, encoding, *dims, offset, length, 0)
    table = entry * min(count, 3)
    header = struct.pack("<8sHHIIIQ", container.MAGIC, 2, 0, 32, count, zlib.crc32(table),
                         32 + len(table))
    with pytest.raises(tvt.FormatError):
        container.read_sections(header + table)
