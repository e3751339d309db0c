"""The serial link to a board: frames over pyserial (a real port, `socket://`, or the simulated
board's pty), with timeouts, retries with bounded back-off, and counters.

`Link.transact(cmd, payload)` sends one command and returns the reply payload.  It re-sends the
same frame (same SEQ, so the board never executes it twice) on a timeout or a CRC error reply,
at most `retries` times, then raises `LinkError`."""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import framing as fr


class LinkError(RuntimeError):
    """The link does not work: no valid reply after every retry, or the port failed."""


class DeviceError(RuntimeError):
    """The board answered a command with an error code other than CRC."""

    def __init__(self, code: int, cmd: int):
        self.code, self.cmd = code, cmd
        super().__init__(f"board refused {fr.COMMAND_NAMES.get(cmd, hex(cmd))}: "
                         f"{fr.ERROR_NAMES.get(code, f'error {code}')}")


@dataclass
class LinkStats:
    frames: int = 0          # commands completed
    bytes_out: int = 0       # bytes written, re-sends included
    bytes_in: int = 0        # bytes read
    retries: int = 0         # re-sends (timeouts + CRC error replies)
    timeouts: int = 0
    crc_replies: int = 0     # CRC error replies from the board
    rx_crc_errors: int = 0   # damaged frames the host threw away
    seconds: float = 0.0     # time spent inside transact

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Timing:
    """How long to wait for a reply: base + bytes * byte_s + cycles * cycle_s (seconds).

    Real boards: byte_s = 10 / baud with a margin; the simulated board moves bytes and cycles
    at Verilator's speed, so its timing is set by `sw.runtime.simboard`."""
    base_s: float = 0.2
    byte_s: float = 10 / 3_000_000 * 1.5
    cycle_s: float = 1 / 10_000_000
    backoff_s: float = 0.01
    backoff_max_s: float = 0.5

    def reply_timeout(self, nbytes: int, cycles: int = 0) -> float:
        return self.base_s + nbytes * self.byte_s + cycles * self.cycle_s


class Link:
    """One open connection to a board (see the module docstring)."""

    def __init__(self, port, *, timing: Timing | None = None, retries: int = 8,
                 max_payload: int = fr.MAX_LEN):
        self.port = port
        self.timing = timing or Timing()
        self.retries = retries
        self.decoder = fr.Decoder(max_payload)
        self.stats = LinkStats()
        self._seq = 0

    @classmethod
    def open(cls, url: str, baud: int = 3_000_000, **kwargs) -> "Link":
        """Open a port by name or pyserial URL (`/dev/ttyUSB0`, `socket://127.0.0.1:5000`)."""
        import serial
        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.05, write_timeout=10)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open {url}: {e}") from None
        return cls(port, **kwargs)

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def max_payload(self) -> int:
        return self.decoder.max_payload

    @max_payload.setter
    def max_payload(self, value: int) -> None:
        self.decoder.max_payload = value

    def _flush_input(self) -> None:
        self.decoder.reset()
        try:
            self.port.reset_input_buffer()
        except Exception:
            pass

    def _read_reply(self, seq: int, deadline: float) -> fr.Frame | None | bool:
        """The reply with `seq`; None on timeout; False when a damaged frame arrived and
        nothing else is pending (re-sending at once beats waiting for the timeout)."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            try:
                chunk = self.port.read(fr.bytes_needed(self.decoder))
            except Exception as e:     # serial.SerialException, OSError
                raise LinkError(f"read failed: {e}") from None
            if not chunk:
                continue
            self.stats.bytes_in += len(chunk)
            before = self.decoder.crc_errors
            frames = self.decoder.feed(chunk)
            self.stats.rx_crc_errors += self.decoder.crc_errors - before
            for f in frames:
                if f.seq == seq:
                    return f
                # a late reply to an earlier command (a retry's duplicate): ignore it
            if self.decoder.crc_errors > before and self.decoder.pending == 0:
                return False

    def transact(self, cmd: int, payload: bytes = b"", *, reply_bytes: int = 0,
                 cycles: int = 0) -> bytes:
        """Send `cmd` with `payload`, return the success reply's payload.

        reply_bytes / cycles: the expected reply payload size and device work, to size the
        timeout.  Raises DeviceError (board error code) or LinkError (no valid reply)."""
        t0 = time.monotonic()
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = fr.encode(seq, cmd, payload)
        timeout = self.timing.reply_timeout(len(frame) + reply_bytes + fr.OVERHEAD, cycles)
        backoff = self.timing.backoff_s
        name = fr.COMMAND_NAMES.get(cmd, hex(cmd))
        last = "timeout"
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.timing.backoff_max_s)
                    self._flush_input()
                try:
                    self.port.write(frame)
                    self.port.flush()
                except Exception as e:
                    raise LinkError(f"write failed: {e}") from None
                self.stats.bytes_out += len(frame)
                reply = self._read_reply(seq, time.monotonic() + timeout)
                if reply is None:
                    self.stats.timeouts += 1
                    last = f"no reply within {timeout:.2f} s"
                    continue
                if reply is False:
                    last = "damaged reply"
                    continue
                if reply.is_error:
                    try:
                        code, req = reply.error()
                    except ValueError:
                        last = "malformed error reply"
                        continue
                    if code == fr.ERR_CRC:
                        self.stats.crc_replies += 1
                        last = "CRC error reply"
                        continue
                    raise DeviceError(code, req)
                if reply.cmd != cmd | fr.REPLY_BIT:
                    last = f"reply with command {reply.cmd:#04x}"
                    continue
                self.stats.frames += 1
                return reply.payload
            raise LinkError(f"{name}: no valid reply after {self.retries + 1} attempts "
                            f"(last: {last})")
        finally:
            self.stats.seconds += time.monotonic() - t0
