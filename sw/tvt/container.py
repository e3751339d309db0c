"""The .tvt container: magic, header, section table, CRC-checked sections (docs/tvt-format.md).

This module knows nothing about models: it writes and reads a list of named, typed sections
(integer arrays, packed trits, UTF-8 JSON). Everything is little-endian. A section is stored
raw or, when that is smaller, deflated after a byte shuffle (encoding 1).
"""
import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .trits import pack_trits, packed_size, unpack_trits

MAGIC = b"\x89TVT\r\n\x1a\n"
VERSION_MAJOR = 2
VERSION_MINOR = 0
READABLE_MAJORS = (1, 2)  # 1.x: the same layout, every section raw
HEADER = struct.Struct("<8sHHIIIQ")  # magic, major, minor, header_size, count, table_crc, file_size
HEADER_SIZE = HEADER.size  # 32
MAX_DIMS = 6
NAME_BYTES = 64
# name, dtype, ndim, encoding, dims, offset, stored length, crc of the stored bytes
ENTRY = struct.Struct(f"<{NAME_BYTES}sBBBx{MAX_DIMS}IQQI8x")
ENTRY_SIZE = ENTRY.size  # 120
ALIGN = 16
MAX_SECTIONS = 100_000
MAX_SECTION_BYTES = 1 << 34  # 16 GiB: anything claiming more is not a .tvt
RAW, SHUFFLE_DEFLATE = 0, 1  # section encodings
ENCODING_NAMES = {RAW: "raw", SHUFFLE_DEFLATE: "shuffle+deflate"}
DEFLATE_MAX_RATIO = 1032  # deflate never expands more than this (258 bytes from ~2 bits)

# dtype codes. TRIT5: logical int8 trits of `shape`, stored packed 5 per byte.
DTYPES = {1: np.dtype("<u1"), 2: np.dtype("<i1"), 3: np.dtype("<i2"), 4: np.dtype("<i4")}
TRIT5, JSON = 5, 6
_CODE_OF = {np.dtype("u1"): 1, np.dtype("i1"): 2, np.dtype("i2"): 3, np.dtype("i4"): 4}
DTYPE_NAMES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", TRIT5: "trit5", JSON: "json"}
ITEMSIZE = {"int16": 2, "int32": 4}  # bytes shuffled into planes; every other dtype: 1


class FormatError(ValueError):
    """A malformed .tvt file; the message says what is wrong."""


class Trits:
    """Marks an int8 array of trits to be stored packed (dtype trit5)."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.int8)


@dataclass(frozen=True)
class SectionInfo:
    """One section table entry."""
    name: str
    dtype: str
    shape: tuple
    offset: int
    length: int      # bytes stored in the file (what the CRC covers)
    crc: int
    encoding: str    # "raw" or "shuffle+deflate"
    size: int        # bytes once decoded (dtype x shape)


def shuffle(data: bytes, itemsize: int) -> bytes:
    """Byte planes: every element's byte 0, then every byte 1, ... (HDF5's shuffle filter)."""
    if itemsize == 1:
        return data
    return np.frombuffer(data, np.uint8).reshape(-1, itemsize).T.tobytes()


def unshuffle(data: bytes, itemsize: int) -> bytes:
    """Inverse of shuffle."""
    if itemsize == 1:
        return data
    return np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes()


def _store(code, data: bytes, compress: bool) -> tuple[int, bytes]:
    """(encoding, stored bytes): deflated after a byte shuffle when that is smaller."""
    if compress and len(data) > 64:
        packed = zlib.compress(shuffle(data, ITEMSIZE.get(DTYPE_NAMES[code], 1)), 9)
        if len(packed) < len(data):
            return SHUFFLE_DEFLATE, packed
    return RAW, data


def _encode(name, value):
    if isinstance(value, Trits):
        shape = value.values.shape
        return TRIT5, shape, pack_trits(value.values).tobytes()
    if isinstance(value, np.ndarray):
        code = _CODE_OF.get(value.dtype.newbyteorder("=")) if value.dtype.kind in "iu" else None
        if code is None:
            raise TypeError(f"section {name!r}: dtype {value.dtype} not storable "
                            "(uint8, int8, int16, int32 only)")
        return code, value.shape, np.ascontiguousarray(value, dtype=DTYPES[code]).tobytes()
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return JSON, (len(data),), data


def write_sections(path, sections: dict, compress: bool = True) -> int:
    """Write sections {name: ndarray | Trits | JSON-able} to path; return the file size.
    compress: store each section deflated after a byte shuffle where that is smaller."""
    if len(sections) > MAX_SECTIONS:
        raise ValueError("too many sections")
    encoded = []
    for name, value in sections.items():
        raw_name = name.encode()
        if not raw_name or len(raw_name) > NAME_BYTES or b"\0" in raw_name:
            raise ValueError(f"section name {name!r} must be 1..{NAME_BYTES} UTF-8 bytes without NUL")
        code, shape, data = _encode(name, value)
        if len(shape) > MAX_DIMS:
            raise ValueError(f"section {name!r}: more than {MAX_DIMS} dimensions")
        encoded.append((raw_name, code, tuple(int(d) for d in shape), *_store(code, data, compress)))
    pos = HEADER_SIZE + ENTRY_SIZE * len(encoded)
    entries, blobs = [], []
    for raw_name, code, shape, encoding, data in encoded:
        pad = -pos % ALIGN
        blobs.append(b"\0" * pad)
        pos += pad
        dims = list(shape) + [0] * (MAX_DIMS - len(shape))
        entries.append(ENTRY.pack(raw_name, code, len(shape), encoding, *dims, pos, len(data),
                                  zlib.crc32(data)))
        blobs.append(data)
        pos += len(data)
    table = b"".join(entries)
    header = HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_SIZE, len(entries),
                         zlib.crc32(table), pos)
    blob = header + table + b"".join(blobs)
    assert len(blob) == pos
    with open(path, "wb") as f:
        f.write(blob)
    return pos


def _expected_length(code, shape):
    n = 1
    for d in shape:
        n *= d
    if code == TRIT5:
        return packed_size(n)
    if code == JSON:
        return n
    return n * DTYPES[code].itemsize


def parse_table(buf: bytes) -> list[SectionInfo]:
    """Validate the header and section table of a whole file's bytes; return the entries.
    Checks magic, version, header size, count, table CRC, file size, every entry's dtype,
    shape, offset and length (no overlaps) -- before any section is decoded."""
    size = len(buf)
    if size < HEADER_SIZE:
        raise FormatError(f"file is {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, major, minor, hsize, count, table_crc, fsize = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError("not a .tvt file (bad magic)")
    if major not in READABLE_MAJORS:
        raise FormatError(f"unsupported .tvt version {major}.{minor} (this reader reads "
                          f"{', '.join(f'{m}.x' for m in READABLE_MAJORS)})")
    if hsize != HEADER_SIZE:
        raise FormatError(f"header size {hsize}, expected {HEADER_SIZE}")
    if fsize != size:
        raise FormatError(f"header says {fsize} bytes, file has {size} (truncated or padded)")
    if count > MAX_SECTIONS:
        raise FormatError(f"section count {count} exceeds {MAX_SECTIONS}")
    table_end = HEADER_SIZE + count * ENTRY_SIZE
    if table_end > size:
        raise FormatError(f"section table of {count} entries runs past the end of the file")
    table = buf[HEADER_SIZE:table_end]
    if zlib.crc32(table) != table_crc:
        raise FormatError("section table CRC mismatch")
    infos, names = [], set()
    for i in range(count):
        raw_name, code, ndim, encoding, *rest = ENTRY.unpack_from(buf, HEADER_SIZE + i * ENTRY_SIZE)
        dims, (offset, length, crc) = rest[:MAX_DIMS], rest[MAX_DIMS:]
        try:
            name = raw_name.rstrip(b"\0").decode()
        except UnicodeDecodeError:
            raise FormatError(f"section {i}: name is not UTF-8") from None
        if not name or "\0" in name:
            raise FormatError(f"section {i}: empty or malformed name")
        if name in names:
            raise FormatError(f"section {name!r} appears twice")
        names.add(name)
        if code not in DTYPE_NAMES:
            raise FormatError(f"section {name!r}: unknown dtype code {code}")
        if ndim > MAX_DIMS or any(dims[ndim:]):
            raise FormatError(f"section {name!r}: bad dimension count {ndim}")
        shape = tuple(dims[:ndim])
        if code == JSON and ndim != 1:
            raise FormatError(f"section {name!r}: JSON section must be 1-D")
        if encoding not in ENCODING_NAMES or (major == 1 and encoding != RAW):
            raise FormatError(f"section {name!r}: unknown encoding {encoding}")
        expected = _expected_length(code, shape)
        if expected > MAX_SECTION_BYTES or length > MAX_SECTION_BYTES:
            raise FormatError(f"section {name!r}: absurd size ({expected} bytes decoded, "
                              f"{length} stored)")
        if encoding == RAW and expected != length:
            raise FormatError(f"section {name!r}: shape {shape} of {DTYPE_NAMES[code]} needs "
                              f"{expected} bytes, entry says {length}")
        if encoding == SHUFFLE_DEFLATE and not 0 < length < expected <= DEFLATE_MAX_RATIO * length + 64:
            raise FormatError(f"section {name!r}: {length} deflated bytes cannot hold the {expected} "
                              f"bytes of shape {shape} of {DTYPE_NAMES[code]}")
        if offset < table_end or offset + length > size:
            raise FormatError(f"section {name!r}: bytes {offset}..{offset + length} outside the "
                              f"data area {table_end}..{size}")
        infos.append(SectionInfo(name, DTYPE_NAMES[code], shape, offset, length, crc,
                                 ENCODING_NAMES[encoding], expected))
    spans = sorted((s.offset, s.offset + s.length, s.name) for s in infos)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise FormatError(f"sections {a!r} and {b!r} overlap")
    return infos


def _inflate(data: memoryview, info: SectionInfo) -> bytes:
    """The decoded bytes of a shuffle+deflate section: exactly info.size of them."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, info.size)  # never more than the shape needs
    except zlib.error as e:
        raise FormatError(f"section {info.name!r}: corrupt deflate data ({e})") from None
    if len(out) != info.size or not d.eof or d.unused_data or d.unconsumed_tail:
        raise FormatError(f"section {info.name!r}: deflate data does not decode to exactly "
                          f"{info.size} bytes")
    return unshuffle(out, ITEMSIZE.get(info.dtype, 1))


def _decode(buf: memoryview, info: SectionInfo):
    data = buf[info.offset:info.offset + info.length]  # CRC checked by read_sections
    if info.encoding != "raw":
        data = memoryview(_inflate(data, info))
    if info.dtype == "json":
        try:
            return json.loads(bytes(data).decode())
        except (UnicodeDecodeError, ValueError) as e:
            raise FormatError(f"section {info.name!r}: invalid JSON ({e})") from None
    if info.dtype == "trit5":
        n = int(np.prod(info.shape, dtype=np.int64)) if info.shape else 1
        try:
            return unpack_trits(np.frombuffer(data, dtype=np.uint8), n).reshape(info.shape)
        except ValueError as e:
            raise FormatError(f"section {info.name!r}: {e}") from None
    arr = np.frombuffer(data, dtype=np.dtype(info.dtype).newbyteorder("<")).reshape(info.shape)
    return arr.astype(info.dtype)  # native byte order, writable, owns its memory


def read_sections(buf: bytes) -> tuple[dict, list[SectionInfo]]:
    """Validate everything (table first, then every section's CRC) and decode all sections."""
    infos = parse_table(buf)
    view = memoryview(buf)  # slices of it are views, not copies
    for info in infos:  # all CRCs before decoding (allocating) anything
        if zlib.crc32(view[info.offset:info.offset + info.length]) != info.crc:
            raise FormatError(f"section {info.name!r}: CRC mismatch")
    return {info.name: _decode(view, info) for info in infos}, infos


def read_file(path) -> tuple[dict, list[SectionInfo]]:
    """read_sections on a file's bytes; OSError for a missing file, FormatError if malformed."""
    with open(path, "rb") as f:
        buf = f.read()
    return read_sections(buf)
