"""One Verilator model for the unit benches: the MAC array and the requantizer side by side."""
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import AccelConfig
from hw.mac import TernaryMACArray
from hw.requant import Requantizer


class UnitsTop(wiring.Component):
    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        P, L, S = cfg.P, cfg.L, cfg.sum_bits
        super().__init__({
            "mac_valid": In(1), "mac_first": In(1), "mac_last": In(1),
            "mac_weights": In(2 * P * L), "mac_x": In(8 * L),
            "mac_result_valid": Out(1), "mac_result": Out(S * P),
            "rq_valid": In(1), "rq_acc": In(signed(S)), "rq_bias": In(signed(32)),
            "rq_m0": In(signed(32)), "rq_shift": In(signed(8)), "rq_zp": In(signed(8)),
            "rq_out_valid": Out(1), "rq_out": Out(signed(8)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.mac = mac = TernaryMACArray(cfg.P, cfg.L, cfg.sum_bits)
        m.submodules.rq = rq = Requantizer(cfg.sum_bits)
        m.d.comb += [
            mac.valid.eq(self.mac_valid), mac.first.eq(self.mac_first), mac.last.eq(self.mac_last),
            mac.weights.eq(self.mac_weights), mac.x.eq(self.mac_x),
            self.mac_result_valid.eq(mac.result_valid), self.mac_result.eq(mac.result),
            rq.valid.eq(self.rq_valid), rq.acc.eq(self.rq_acc), rq.bias.eq(self.rq_bias),
            rq.m0.eq(self.rq_m0), rq.shift.eq(self.rq_shift), rq.zp.eq(self.rq_zp),
            self.rq_out_valid.eq(rq.out_valid), self.rq_out.eq(rq.out),
        ]
        return m


def generate_units_verilog(cfg: AccelConfig, path, name="tervit_units"):
    from pathlib import Path
    from amaranth.back import verilog
    from hw.top import _find_yosys
    _find_yosys()
    top = UnitsTop(cfg)
    Path(path).write_text(verilog.convert(top, name=name, emit_src=False))
    return path
