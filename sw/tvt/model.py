"""The integer model held by a .tvt file: config, named integer tensors, linear layers, goldens.

Section names (docs/tvt-format.md): `config` (JSON), `input_table` (int8 [C, 256]),
`lin/<layer>/{trits,bias,m0,shift}`, `op/<op>/<key>` (an op's integer parameters),
`const/<name>` (int8 constants), `golden/inputs`, `golden/outputs`.
"""
from dataclasses import dataclass

import numpy as np

from .container import FormatError, Trits, read_file, write_sections

FORMAT_NAME = "tervit-int8"


@dataclass(frozen=True)
class LinearLayer:
    """One ternary linear layer: y = requantize(bias + trits @ x, m0, shift, out_zp).

    trits int8 [O, K]; bias int32 [O] with the input zero point folded in; m0, shift int32 [O].
    """
    name: str
    K: int
    O: int
    trits: np.ndarray
    bias: np.ndarray
    m0: np.ndarray
    shift: np.ndarray
    out_zp: int
    in_zp: int


class Model:
    """An integer-only model: `config` (dict) and `tensors` ({section name: int ndarray})."""

    def __init__(self, config: dict, tensors: dict):
        self.config = config
        self.tensors = tensors
        self._validate()

    # -- access -------------------------------------------------------------------------
    def linear_layers(self) -> list[LinearLayer]:
        """The ternary linear layers in execution order."""
        return [self.linear(entry["name"]) for entry in self.config["linear_layers"]]

    def linear(self, name: str) -> LinearLayer:
        """The linear layer called `name` (KeyError if none)."""
        entry = self._linear_entries[name]
        p = f"lin/{name}/"
        return LinearLayer(name, int(entry["K"]), int(entry["O"]), self.tensors[p + "trits"],
                           self.tensors[p + "bias"], self.tensors[p + "m0"],
                           self.tensors[p + "shift"], int(entry["out_zp"]), int(entry["in_zp"]))

    def op_arrays(self, name: str) -> dict:
        """The integer parameters of op `name` ({key: ndarray}): its `op/<name>/<key>` sections
        and its scalars (config["op_scalars"][name], as 0-d int64 arrays)."""
        prefix = f"op/{name}/"
        arrays = {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        for key, value in self.config.get("op_scalars", {}).get(name, {}).items():
            arrays[key] = np.array(value, dtype=np.int64)
        if not arrays:
            raise KeyError(f"no parameters for op {name!r} in the model")
        return arrays

    def const(self, name: str) -> np.ndarray:
        """An integer constant (class token, position embedding, attention bias, ...)."""
        return self.tensors[f"const/{name}"]

    @property
    def input_table(self) -> np.ndarray:
        """int8 [C, 256]: the quantized value of raw uint8 pixel value v in channel c."""
        return self.tensors["input_table"]

    @property
    def golden(self):
        """(inputs uint8 [N, C, H, W], outputs int8 [N, classes]) or None."""
        if "golden/inputs" not in self.tensors:
            return None
        return self.tensors["golden/inputs"], self.tensors["golden/outputs"]

    @property
    def arch(self) -> str:
        return self.config["arch"]

    # -- checks -------------------------------------------------------------------------
    def _validate(self):
        c = self.config
        if not isinstance(c, dict) or c.get("format") != FORMAT_NAME:
            raise FormatError(f"config is not a {FORMAT_NAME} model config")
        for key in ("arch", "input", "num_classes", "linear_layers", "graph"):
            if key not in c:
                raise FormatError(f"config lacks {key!r}")
        inp = c["input"]
        try:
            C, H, W = (int(inp[k]) for k in ("C", "H", "W"))
        except (KeyError, TypeError, ValueError):
            raise FormatError("config 'input' must give integer C, H, W") from None
        self._expect("input_table", np.int8, (C, 256))
        self._linear_entries = {}
        scalars = c.get("op_scalars", {})
        if not isinstance(scalars, dict) or not all(
                isinstance(d, dict) and all(type(v) is int and -2**63 <= v < 2**63 for v in d.values())
                for d in scalars.values()):
            raise FormatError("config 'op_scalars' must map op names to {key: integer}")
        if not isinstance(c["linear_layers"], list):
            raise FormatError("config 'linear_layers' must be a list")
        for entry in c["linear_layers"]:
            try:
                name, K, O = entry["name"], int(entry["K"]), int(entry["O"])
                int(entry["out_zp"]), int(entry["in_zp"])
            except (KeyError, TypeError, ValueError):
                raise FormatError(f"malformed linear layer entry {entry!r:.80}") from None
            p = f"lin/{name}/"
            self._expect(p + "trits", np.int8, (O, K))
            for key in ("bias", "shift"):  # stored in the narrowest integer type that holds them
                a = self.tensors.get(p + key)
                if isinstance(a, np.ndarray) and a.dtype in (np.int8, np.int16):
                    self.tensors[p + key] = a.astype(np.int32)
            for key in ("bias", "m0", "shift"):
                self._expect(p + key, np.int32, (O,))
            self._linear_entries[name] = entry
        if ("golden/inputs" in self.tensors) != ("golden/outputs" in self.tensors):
            raise FormatError("golden inputs and outputs must come together")
        if "golden/inputs" in self.tensors:
            gi = self._expect("golden/inputs", np.uint8, None)
            go = self._expect("golden/outputs", np.int8, None)
            if gi.ndim != 4 or gi.shape[1:] != (C, H, W) or go.shape != (gi.shape[0], int(c["num_classes"])):
                raise FormatError(f"golden shapes {gi.shape} / {go.shape} do not fit the model")

    def _expect(self, name, dtype, shape):
        a = self.tensors.get(name)
        if a is None:
            raise FormatError(f"missing section {name!r}")
        if not isinstance(a, np.ndarray) or a.dtype != dtype or (shape is not None and a.shape != tuple(shape)):
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise FormatError(f"section {name!r}: expected {np.dtype(dtype)} {shape}, got {got}")
        return a


def narrowest(a: np.ndarray) -> np.ndarray:
    """A signed integer array as int8, int16 or int32, the narrowest that holds every value
    (other arrays are returned unchanged)."""
    if a.dtype.kind != "i":
        return a
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt)
    raise ValueError(f"values {lo}..{hi} do not fit in int32")


def save(model: Model, path, compress: bool = True) -> int:
    """Write model to path as a .tvt file; returns the file size in bytes.
    compress=False stores every section raw (usable in place, e.g. memory-mapped)."""
    sections = {"config": model.config}
    for name, arr in model.tensors.items():
        arr = np.asarray(arr)
        if name.startswith("op/") or (name.startswith("lin/") and name.endswith(("/bias", "/shift"))):
            arr = narrowest(arr)
        sections[name] = Trits(arr) if name.endswith("/trits") else arr
    return write_sections(path, sections, compress=compress)


def load(path) -> Model:
    """Read and validate a .tvt file. Raises FormatError if malformed, OSError if unreadable."""
    return from_sections(read_file(path)[0])


def from_sections(sections: dict) -> Model:
    """The Model of decoded sections ({name: value}, as sw.tvt.container.read_file returns)."""
    sections = dict(sections)
    config = sections.pop("config", None)
    if config is None:
        raise FormatError("missing section 'config'")
    return Model(config, sections)
