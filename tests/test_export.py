"""sw.export: the ViT .tvt -> .tflite exporter and its CLI, run in ai-edge-litert."""
import json

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from sw import tvt  # noqa: E402
from sw.export import check  # noqa: E402
from sw.export.__main__ import main  # noqa: E402
from sw.export.graph import ExportError, export_tflite, recover_alpha  # noqa: E402
from sw.ref import ops  # noqa: E402
from tests._packed_models import packed_fixture  # noqa: E402


@pytest.fixture(scope="module")
def vit():
    """Packed with LiteRT's own 31-bit multipliers, so every FULLY_CONNECTED is reproducible."""
    _, packed, _, _, test = packed_fixture("vit_fmnist", multiplier_bits=31)
    return packed, test


def test_every_builtin_op_is_bit_exact_in_place(vit):
    """sw.ref's op on LiteRT's own inputs equals LiteRT's output for every int8 builtin op
    of the exported graph; the float LayerNorm subgraph is within 1 LSB of sw.ref's."""
    model, test = vit
    data, record = export_tflite(model, with_record=True)
    kinds = {k for k, *_ in record}
    assert {"linear", "add", "matmul", "matmul_adj_y", "softmax", "gelu", "layernorm"} <= kinds
    assert "linear_approx" not in kinds
    worst = check.check_ops_in_place(model, data, record, test[:4])
    assert len(worst) == len(record)
    for name, (kind, lsb) in worst.items():
        assert lsb <= (1 if kind == "layernorm" else 0), (name, kind, lsb)


def test_16_bit_multipliers_export_within_1_lsb():
    """sw.pack's default 16-bit m0 is not a float32 scale's multiplier: LiteRT takes the
    nearest float32 there, so those FULLY_CONNECTED differ by at most 1 LSB, rarely."""
    _, model, _, _, test = packed_fixture("vit_fmnist")
    data, record = export_tflite(model, with_record=True)
    linear = [k for k, *_ in record if k.startswith("linear")]
    assert linear and set(linear) == {"linear_approx"}
    worst = check.check_ops_in_place(model, data, record, test[:4])
    assert max(lsb for kind, lsb in worst.values() if kind == "linear_approx") <= 1
    assert all(lsb == 0 for kind, lsb in worst.values() if kind not in check.TOLERANCE_LSB)
    rep = check.compare(model, data, test[:40])
    assert rep["top1_agree"] >= 38


def test_logits_close_to_reference(vit):
    model, test = vit
    rep = check.compare(model, export_tflite(model), test[:40])
    assert rep["top1_agree"] >= 38            # LayerNorm's 1-LSB differences rarely flip top-1
    assert rep["logits_bit_exact"] >= 20


def test_recover_alpha_reproduces_multipliers():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s_x, s_y = rng.uniform(0.001, 0.1, 2)
        alpha = np.float32(rng.uniform(1e-3, 0.3))
        m0, shift = ops.quantize_multiplier(float(np.float32(s_x)) * float(alpha) / float(np.float32(s_y)))
        a = recover_alpha(m0, shift, s_x, s_y)
        assert ops.quantize_multiplier(float(np.float32(s_x)) * float(a) / float(np.float32(s_y))) == (m0, shift)
    with pytest.raises(ExportError, match="no float32 alpha"):  # 8 significant bits: unreachable
        recover_alpha(*ops.quantize_multiplier(0.3 * 0.0123456 / 0.0456789, 8), 0.3, 0.0456789)


def test_cli_writes_checks_and_reports(vit, tmp_path):
    model, _ = vit
    path = tmp_path / "m.tvt"
    tvt.save(model, path)
    out, rep = tmp_path / "m.tflite", tmp_path / "r.json"
    assert main([str(path), "-o", str(out), "--check", "--json", str(rep)]) == 0
    assert out.read_bytes()[4:8] == b"TFL3"
    report = json.loads(rep.read_text())
    assert report["ops_bad"] == 0 and report["ops_max_lsb_builtin"] == 0
    assert report["linear_layers_approx"] == 0
    assert all(not isinstance(v, (dict, list)) for v in report.values())


def test_cli_bad_inputs(tmp_path, capsys):
    bad = tmp_path / "bad.tvt"
    bad.write_bytes(b"not a model")
    assert main([str(bad), "-o", str(tmp_path / "x.tflite")]) == 2
    assert main([str(tmp_path / "missing.tvt"), "-o", str(tmp_path / "x.tflite")]) == 2
    err = capsys.readouterr().err
    assert err.count("sw.export: error:") == 2 and "Traceback" not in err


@pytest.fixture(scope="module")
def swin():
    _, packed, _, _, test = packed_fixture("swin_tiny32", multiplier_bits=31)
    return packed, test


def test_swin_ops_bit_exact_in_place(swin):
    """Swin: roll + window partition as GATHER permutations, window bias ADD, MEAN pooling."""
    model, test = swin
    data, record = export_tflite(model, with_record=True)
    assert {"mean", "add", "matmul_adj_y", "layernorm"} <= {k for k, *_ in record}
    worst = check.check_ops_in_place(model, data, record, test[:2])
    for name, (kind, lsb) in worst.items():
        assert lsb <= (1 if kind == "layernorm" else 0), (name, kind, lsb)
    rep = check.compare(model, data, test[:10])
    assert rep["top1_agree"] >= 9


def test_unknown_graph_kind_is_refused(vit):
    model, _ = vit
    bad = tvt.Model({**model.config, "graph": {**model.config["graph"], "kind": "resnet"}},
                    dict(model.tensors))
    with pytest.raises(ExportError, match="resnet"):
        export_tflite(bad)


def test_builder_schema_conventions():
    """Buffer 0 empty; GELU (150) carries deprecated_builtin_code 127; errors are clear."""
    import importlib

    from sw.export.tflite_builder import TFLiteBuilder
    mb = TFLiteBuilder()
    x = mb.tensor("x", (4,), "int8", scale=0.1, zero_point=0)
    y = mb.tensor("y", (4,), "int8", scale=0.1, zero_point=0)
    mb.op("GELU", [x], [y])
    m = importlib.import_module("tflite.Model").Model.GetRootAsModel(mb.finish([x], [y]), 0)
    assert m.Buffers(0).DataLength() == 0
    assert (m.OperatorCodes(0).BuiltinCode(), m.OperatorCodes(0).DeprecatedBuiltinCode()) == (150, 127)
    with pytest.raises(ValueError, match="unknown builtin"):
        mb.op("NOT_AN_OP", [x], [y])
    with pytest.raises(ValueError, match="unknown dtype"):
        mb.tensor("z", (1,), "int4")
