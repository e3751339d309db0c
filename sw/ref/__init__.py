"""The integer-only reference: `ops` (the arithmetic, bit-exact with LiteRT's reference kernels)
and `graph` (runs a whole .tvt model). `python -m sw.ref model.tvt --dataset fashion-mnist`."""
from .graph import run

__all__ = ["run"]
