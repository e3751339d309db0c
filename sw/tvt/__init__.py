"""The .tvt file: an integer-only ternary ViT model (docs/tvt-format.md).

`save(model, path)`, `load(path) -> Model`, `FormatError`. The container layer
(`sw.tvt.container`) and trit packing (`sw.tvt.trits`) are usable on their own.
"""
from .container import FormatError, read_file, write_sections
from .model import LinearLayer, Model, load, save
from .trits import pack_trits, unpack_trits

__all__ = ["FormatError", "Model", "LinearLayer", "save", "load", "read_file", "write_sections",
           "pack_trits", "unpack_trits"]
