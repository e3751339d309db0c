"""The board registry: every FPGA target this project builds for.

    >>> import boards
    >>> boards.names()
    ['icebreaker', 'ulx3s-12f', 'ulx3s-25f', 'ulx3s-45f', 'ulx3s-85f']
    >>> boards.get("ulx3s").name          # the alias `ulx3s` is the 85F
    'ulx3s-85f'

A `Board` describes hardware only (platform, clock, UART, MAC array shape, memory sizes);
it holds no logic of the model.  See docs/boards.md.
"""
from boards.board import Board, UnknownBoardError
from boards import ulx3s as _ulx3s, icebreaker as _icebreaker

_BOARDS: dict[str, Board] = {b.name: b for b in (*_ulx3s.BOARDS, _icebreaker.BOARD)}
_ALIASES = {"ulx3s": "ulx3s-85f"}


def names() -> list[str]:
    """The canonical board names, sorted (aliases not included)."""
    return sorted(_BOARDS)


def aliases() -> dict[str, str]:
    """Alias -> canonical board name."""
    return dict(_ALIASES)


def get(name: str) -> Board:
    """The board called `name` (case-insensitive; aliases allowed).

    Raises UnknownBoardError (a ValueError) whose message lists the known names."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _BOARDS:
        known = ", ".join(names() + [f"{a} (= {t})" for a, t in _ALIASES.items()])
        raise UnknownBoardError(f"unknown board {name!r}; known boards: {known}")
    return _BOARDS[key]


__all__ = ["Board", "UnknownBoardError", "get", "names", "aliases"]
