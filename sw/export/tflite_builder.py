"""A small writer of .tflite flatbuffers, without TensorFlow.

Uses the `tflite` package's generated builder modules plus `flatbuffers`. The modules are
imported with importlib because `tflite.Model` the attribute is a class, not the module.

    mb = TFLiteBuilder()
    x = mb.tensor("x", (1, 64), "int8", scale=0.05, zero_point=3)
    w = mb.tensor("w", (10, 64), "int8", scale=alphas, zero_point=0, data=trits)  # per-channel
    b = mb.tensor("b", (10,), "int32", scale=0.05 * alphas, zero_point=0, data=bias)
    y = mb.tensor("y", (1, 10), "int8", scale=0.1, zero_point=-5)
    mb.op("FULLY_CONNECTED", [x, w, b], [y])
    open("m.tflite", "wb").write(mb.finish(inputs=[x], outputs=[y]))

Conventions: buffer 0 stays empty (the schema's sentinel); every non-constant tensor points
at its own empty buffer; builtin codes above 127 also write deprecated_builtin_code = 127
(PLACEHOLDER_FOR_GREATER_OP_CODES), as the schema requires.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np


def _mod(name: str):
    return importlib.import_module(f"tflite.{name}")


_BuiltinOperator = _mod("BuiltinOperator").BuiltinOperator
_BuiltinOptions = _mod("BuiltinOptions").BuiltinOptions
_TensorType = _mod("TensorType").TensorType

_DTYPES = {
    "int8": (_TensorType.INT8, np.int8),
    "uint8": (_TensorType.UINT8, np.uint8),
    "int16": (_TensorType.INT16, np.int16),
    "int32": (_TensorType.INT32, np.int32),
    "int64": (_TensorType.INT64, np.int64),
    "float32": (_TensorType.FLOAT32, np.float32),
}

# op name -> (options table name or None, default option fields)
_OP_OPTIONS = {
    "FULLY_CONNECTED": ("FullyConnectedOptions", {}),
    "ADD": ("AddOptions", {}),
    "MUL": ("MulOptions", {}),
    "SUB": ("SubOptions", {}),
    "BATCH_MATMUL": ("BatchMatMulOptions", {}),
    "SOFTMAX": ("SoftmaxOptions", {"Beta": 1.0}),
    "GELU": ("GeluOptions", {}),
    "MEAN": ("ReducerOptions", {}),
    "SUM": ("ReducerOptions", {}),
    "RESHAPE": ("ReshapeOptions", {}),
    "TRANSPOSE": ("TransposeOptions", {}),
    "CONCATENATION": ("ConcatenationOptions", {}),
    "GATHER": ("GatherOptions", {}),
    "UNPACK": ("UnpackOptions", {}),
}


@dataclass
class _Tensor:
    name: str
    shape: tuple
    ttype: int
    buffer: int
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    quantized_dimension: int


@dataclass
class _Op:
    opcode_index: int
    inputs: list
    outputs: list
    options_name: str | None
    options: dict = field(default_factory=dict)


class TFLiteBuilder:
    """Collects tensors, constant buffers and ops of one subgraph; `finish` returns the bytes."""

    def __init__(self, description: str = "tervit"):
        self.description = description
        self._buffers: list[bytes | None] = [None]  # buffer 0: the empty sentinel
        self._tensors: list[_Tensor] = []
        self._opcodes: list[int] = []
        self._ops: list[_Op] = []

    def tensor(self, name: str, shape, dtype: str, scale=None, zero_point=None,
               quantized_dimension: int = 0, data=None) -> int:
        """Add a tensor; returns its index.

        scale/zero_point: scalars (per-tensor) or 1-D arrays (per-channel along
        `quantized_dimension`); None for an unquantized tensor. data: a constant's values
        (cast to dtype, C order), stored in a buffer of its own.
        """
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; known: {sorted(_DTYPES)}")
        ttype, np_dtype = _DTYPES[dtype]
        shape = tuple(int(s) for s in shape)
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data).astype(np_dtype).reshape(shape))
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        else:
            raw = None
        self._buffers.append(raw)
        if scale is not None:
            scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            zp = np.zeros(scale.shape, np.int64) if zero_point is None else zero_point
            zero_point = np.broadcast_to(np.atleast_1d(np.asarray(zp, dtype=np.int64)), scale.shape)
        self._tensors.append(_Tensor(name, shape, ttype, len(self._buffers) - 1, scale,
                                     zero_point, quantized_dimension))
        return len(self._tensors) - 1

    def shape(self, index: int) -> tuple:
        """The shape of tensor `index`."""
        return self._tensors[index].shape

    def op(self, name: str, inputs, outputs, **options) -> None:
        """Add a builtin op by its BuiltinOperator name; options by their schema field names,
        e.g. op("SOFTMAX", [x], [y], Beta=1.0), op("BATCH_MATMUL", [a, b], [c], AdjY=True)."""
        code = getattr(_BuiltinOperator, name, None)
        if code is None:
            raise ValueError(f"unknown builtin operator {name!r}")
        if code not in self._opcodes:
            self._opcodes.append(code)
        opt_name, defaults = _OP_OPTIONS.get(name, (None, {}))
        if options and opt_name is None:
            raise ValueError(f"options for {name} are not supported by this builder")
        self._ops.append(_Op(self._opcodes.index(code), list(inputs), list(outputs), opt_name,
                             {**defaults, **options}))

    # -- serialisation -----------------------------------------------------------------
    @staticmethod
    def _offset_vector(b, start_fn, offsets):
        start_fn(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def _write_tensor(self, b, t: _Tensor) -> int:
        T, Q = _mod("Tensor"), _mod("QuantizationParameters")
        name = b.CreateString(t.name)
        shape = b.CreateNumpyVector(np.asarray(t.shape, dtype=np.int32))
        quant = None
        if t.scale is not None:
            scale = b.CreateNumpyVector(t.scale.astype(np.float32))
            zp = b.CreateNumpyVector(np.asarray(t.zero_point, dtype=np.int64))
            Q.Start(b)
            Q.AddScale(b, scale)
            Q.AddZeroPoint(b, zp)
            Q.AddQuantizedDimension(b, t.quantized_dimension)
            quant = Q.End(b)
        T.Start(b)
        T.AddShape(b, shape)
        T.AddType(b, t.ttype)
        T.AddBuffer(b, t.buffer)
        T.AddName(b, name)
        if quant is not None:
            T.AddQuantization(b, quant)
        return T.End(b)

    def _write_options(self, b, op: _Op):
        if op.options_name is None:
            return None, 0
        m = _mod(op.options_name)
        m.Start(b)
        for key, value in op.options.items():
            adder = getattr(m, "Add" + key, None)
            if adder is None:
                raise ValueError(f"{op.options_name} has no field {key!r}")
            adder(b, value)
        return m.End(b), getattr(_BuiltinOptions, op.options_name)

    def finish(self, inputs, outputs) -> bytes:
        """Serialise the model with the given subgraph input/output tensor indices."""
        b = flatbuffers.Builder(1024)
        Buf, OC, Op, SG, M = (_mod(n) for n in ("Buffer", "OperatorCode", "Operator",
                                                  "SubGraph", "Model"))
        buffers = []
        for raw in self._buffers:
            data = None
            if raw:
                b.StartVector(1, len(raw), 16)  # 16-byte alignment for int32/int64 data
                b.head = b.head - len(raw)
                b.Bytes[b.head:b.head + len(raw)] = raw
                data = b.EndVector()
            Buf.Start(b)
            if data is not None:
                Buf.AddData(b, data)
            buffers.append(Buf.End(b))
        tensors = [self._write_tensor(b, t) for t in self._tensors]
        ops = []
        for op in self._ops:
            ins = b.CreateNumpyVector(np.asarray(op.inputs, dtype=np.int32))
            outs = b.CreateNumpyVector(np.asarray(op.outputs, dtype=np.int32))
            opt, opt_type = self._write_options(b, op)
            Op.Start(b)
            Op.AddOpcodeIndex(b, op.opcode_index)
            Op.AddInputs(b, ins)
            Op.AddOutputs(b, outs)
            if opt is not None:
                Op.AddBuiltinOptionsType(b, opt_type)
                Op.AddBuiltinOptions(b, opt)
            ops.append(Op.End(b))
        sg_in = b.CreateNumpyVector(np.asarray(inputs, dtype=np.int32))
        sg_out = b.CreateNumpyVector(np.asarray(outputs, dtype=np.int32))
        tvec = self._offset_vector(b, SG.StartTensorsVector, tensors)
        ovec = self._offset_vector(b, SG.StartOperatorsVector, ops)
        sg_name = b.CreateString("main")
        SG.Start(b)
        SG.AddTensors(b, tvec)
        SG.AddInputs(b, sg_in)
        SG.AddOutputs(b, sg_out)
        SG.AddOperators(b, ovec)
        SG.AddName(b, sg_name)
        subgraph = SG.End(b)
        codes = []
        for code in self._opcodes:
            OC.Start(b)
            OC.AddDeprecatedBuiltinCode(b, min(code, 127))
            OC.AddBuiltinCode(b, code)
            OC.AddVersion(b, 1)
            codes.append(OC.End(b))
        code_vec = self._offset_vector(b, M.StartOperatorCodesVector, codes)
        sg_vec = self._offset_vector(b, M.StartSubgraphsVector, [subgraph])
        buf_vec = self._offset_vector(b, M.StartBuffersVector, buffers)
        desc = b.CreateString(self.description)
        M.Start(b)
        M.AddVersion(b, 3)
        M.AddOperatorCodes(b, code_vec)
        M.AddSubgraphs(b, sg_vec)
        M.AddDescription(b, desc)
        M.AddBuffers(b, buf_vec)
        b.Finish(M.End(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def run_litert(model: bytes, *inputs: np.ndarray) -> list[np.ndarray]:
    """Run a .tflite (bytes) in ai-edge-litert with the BUILTIN_REF kernels; returns outputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=model,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ins = it.get_input_details()
    for d, x in zip(ins, inputs):
        if tuple(d["shape"]) != tuple(x.shape):
            it.resize_tensor_input(d["index"], x.shape)
    it.allocate_tensors()
    for d, x in zip(ins, inputs):
        it.set_tensor(d["index"], np.ascontiguousarray(x))
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]
