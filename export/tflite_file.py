"""Reads a .tflite file's ops and tensors: the one place that parses the flatbuffer.

Everything that asks what a converted file holds (the integer-only check, the
Edge TPU rules, the Android card, the report) reads it through `read` or
`parse`; `runtime_nodes` is the one look at LiteRT's graph after delegation;
`metadata_entry` and `with_metadata_entry` read and write the model's named
metadata buffers (export/metadata.py keeps the classifier metadata there).

    >>> from export import tflite_file
    >>> model = tflite_file.read("runs/x/resnet20_int8.tflite")
    >>> [(op.name, op.version) for op in model.ops][:2]
    [('QUANTIZE', 1), ('SUB', 2)]
    >>> model.tensors[model.inputs[0]].dtype, model.tensors[model.inputs[0]].scales
"""

import collections
import dataclasses
import functools
import os
import struct

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

# The flatbuffer file identifier, bytes 4-8 of every .tflite.
IDENTIFIER = b"TFL3"
_NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
                "INT64": np.int64, "FLOAT16": np.float16, "FLOAT32": np.float32}


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of the main subgraph.

    `dtype` is the TFLite type name (`INT8`, `FLOAT32`, ...); `shape_signature`
    has -1 for a dynamic dimension (the stored shape where the file has none);
    `scales` and `zero_points` are empty for a tensor without quantization.
    """

    index: int
    name: str
    dtype: str
    shape: tuple
    shape_signature: tuple
    scales: tuple
    zero_points: tuple
    is_constant: bool
    data: memoryview | None = dataclasses.field(default=None, repr=False)

    @property
    def quantized(self):
        return bool(self.scales)

    @property
    def value(self):
        """The constant's values as a numpy array, or None where not readable."""
        dtype = _NUMPY_TYPES.get(self.dtype)
        if self.data is None or dtype is None:
            return None
        values = np.frombuffer(self.data, dtype=dtype)
        return values.reshape(self.shape) if int(np.prod(self.shape)) == values.size else values


@dataclasses.dataclass(frozen=True)
class Op:
    """One operator of the main subgraph, in execution order.

    `name` is the builtin name (`CONV_2D`) or `CUSTOM:<custom code>`; `inputs`
    and `outputs` are tensor indices, -1 for an optional operand left out;
    `options` is the schema's options object (e.g. `Conv2DOptionsT`) or None.
    """

    index: int
    name: str
    version: int
    inputs: tuple
    outputs: tuple
    options: object = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class TFLiteFile:
    """A parsed .tflite: the main subgraph's ops and tensors.

    `inputs` and `outputs` are tensor indices of the main subgraph;
    `num_subgraphs` counts all of them (control flow adds more).
    """

    source: str
    size_bytes: int
    ops: tuple
    tensors: tuple
    inputs: tuple
    outputs: tuple
    num_subgraphs: int


Node = collections.namedtuple("Node", "index name inputs outputs")


def enum_name(enum, value):
    """The schema's name for a value of one of its enums.

    Args:
        enum: str, a schema enum, e.g. `ActivationFunctionType`,
            `FullyConnectedOptionsWeightsFormat`, `BuiltinOperator`.
        value: int, e.g. an options field such as `fusedActivationFunction`.

    Returns:
        The name (`RELU`), or `<enum>_<value>` for a value the schema lacks.
    """
    return _enum_names(enum).get(value, f"{enum}_{value}")


@functools.cache
def _enum_names(enum):
    return {code: name for name, code in vars(getattr(schema, enum)).items()
            if not name.startswith("_")}


def read(path):
    """Reads and parses a .tflite file.

    Args:
        path: str or path-like.

    Returns:
        A `TFLiteFile`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: not a TFLite flatbuffer (no `TFL3` identifier), truncated
            or corrupt, or no subgraph; the one-line message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TFLite file {path} does not exist.")
    with open(path, "rb") as f:
        return parse(f.read(), source=path)


def parse(data, *, source="<bytes>"):
    """Parses a .tflite flatbuffer held in memory, e.g. `TFLiteConverter.convert()`'s.

    Args:
        data: bytes.
        source: str, what to call the data in error messages.

    Returns:
        A `TFLiteFile`.

    Raises:
        ValueError: as `read`.
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ValueError(f"{source} is not a TFLite model: bytes 4-8 should be the flatbuffer "
                         f"identifier {IDENTIFIER!r}, got {data[4:8]!r} ({len(data)} bytes in "
                         f"all); pass a .tflite file written by TFLiteConverter.")
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        graph = model.subgraphs[0] if model.subgraphs else None
        tensors = tuple(_tensor(i, t, model, data, source)
                        for i, t in enumerate(graph.tensors or [])) if graph else ()
        ops = tuple(_op(i, op, model) for i, op in enumerate(graph.operators or [])) \
            if graph else ()
    except (IndexError, TypeError, ValueError, struct.error) as error:
        raise ValueError(f"{source} is not a valid TFLite model (truncated or corrupt?): "
                         f"{error}.") from None
    if graph is None:
        raise ValueError(f"{source} has no subgraph: it holds no model.")
    return TFLiteFile(source=source, size_bytes=len(data), ops=ops, tensors=tensors,
                      inputs=_ints(graph.inputs), outputs=_ints(graph.outputs),
                      num_subgraphs=len(model.subgraphs))


def metadata_entry(data, name):
    """The bytes of the model's `metadata` entry `name`, or None where it has none.

    Args:
        data: bytes of a .tflite file (anything after the flatbuffer, such as
            a zip of associated files, is ignored).
        name: str, e.g. `TFLITE_METADATA`.
    """
    model = schema.Model.GetRootAs(bytes(data), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _text(entry.Name()) == name and 0 < entry.Buffer() < model.BuffersLength():
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def with_metadata_entry(data, name, value):
    """A copy of a .tflite flatbuffer whose `metadata` entry `name` holds `value`.

    The model is unpacked and packed again through the schema's object API,
    so an entry of the same name is replaced, ops, tensors and constants are
    kept, and bytes after the flatbuffer (a zip of associated files) are dropped.
    Constants stored after the flatbuffer by offset (litert-quantizer writes
    them so) are moved inside it.

    Args:
        data: bytes of a .tflite file.
        name: str, the entry's name, e.g. `TFLITE_METADATA`.
        value: bytes to store in the entry's buffer.

    Returns:
        bytes, the new flatbuffer.

    Raises:
        ValueError: not a TFLite flatbuffer; the message says what was found.
    """
    model = _unpack(data)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(bytes(value), dtype=np.uint8)
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if _text(m.name) == name), None)
    if entry is None:
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers)
        model.metadata.append(entry)
        model.buffers.append(buffer)
    else:
        model.buffers[entry.buffer] = buffer
    return _pack(model, size=len(data) + len(value))


def with_float_io(data):
    """A copy of a .tflite whose integer inputs and outputs are float32 tensors.

    Each integer input gets a float32 twin that a `QUANTIZE` op converts with
    the input's own scale and zero point, and each integer output a
    `DEQUANTIZE` op into a float32 twin; the twins take the original names and
    signature entries. Clients that feed only uint8 or float32 (MediaPipe
    Tasks) can then run a model whose ends are int16.

    Args:
        data: bytes of a .tflite file.

    Returns:
        bytes, the new flatbuffer (bytes after the original one are dropped).

    Raises:
        ValueError: not a TFLite flatbuffer.
    """
    model = _unpack(data)
    graph = model.subgraphs[0]
    floating = schema.TensorType.FLOAT32

    def opcode(builtin):
        for index, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return index
        code = schema.OperatorCodeT()
        # Version 1 takes int16 too; it is what litert-quantizer writes for these ops.
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, 1
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def twin(index):
        tensor = graph.tensors[index]
        copy = schema.TensorT()
        copy.shape, copy.shapeSignature = tensor.shape, tensor.shapeSignature
        copy.type, copy.name, copy.buffer = floating, tensor.name, 0
        tensor.name = (_text(tensor.name) + "_" + enum_name("TensorType", tensor.type).lower()
                       ).encode()
        graph.tensors.append(copy)
        return len(graph.tensors) - 1

    renamed, front, back = {}, [], []
    for ends, builtin, ops in ((graph.inputs, schema.BuiltinOperator.QUANTIZE, front),
                               (graph.outputs, schema.BuiltinOperator.DEQUANTIZE, back)):
        for index in ends:
            if graph.tensors[index].type == floating:
                continue
            renamed[int(index)] = twin(index)
            op = schema.OperatorT()
            op.opcodeIndex = opcode(builtin)
            pair = [renamed[int(index)]], [int(index)]  # (float, integer)
            op.inputs, op.outputs = pair if ops is front else pair[::-1]
            ops.append(op)
    graph.inputs = [renamed.get(int(i), int(i)) for i in graph.inputs]
    graph.outputs = [renamed.get(int(i), int(i)) for i in graph.outputs]
    graph.operators = front + list(graph.operators) + back
    for signature in model.signatureDefs or []:
        for entry in (signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = renamed.get(entry.tensorIndex, entry.tensorIndex)
    return _pack(model, size=len(data))


def _unpack(data):
    """The model's object tree, with constants stored after the flatbuffer moved inside it."""
    parse(data)  # one place says what is wrong with a file that is not a model
    model = schema.ModelT.InitFromPackedBuf(bytes(data), 0)
    # litert-quantizer stores constants after the flatbuffer by offset; packing
    # drops what follows the flatbuffer, so they must move inside it.
    for stored in model.buffers or []:
        if stored.offset > 1:  # 0 and 1 mean "no data after the flatbuffer"
            stored.data = np.frombuffer(bytes(data), dtype=np.uint8,
                                        count=stored.size, offset=stored.offset)
            stored.offset, stored.size = 0, 0
    return model


def _pack(model, *, size):
    builder = flatbuffers.Builder(size + 1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def runtime_nodes(interpreter):
    """The nodes LiteRT runs after applying its delegates, in node-index order.

    A delegate (XNNPACK by default) replaces each partition of ops it takes
    with one `DELEGATE` node; those nodes exist only inside the runtime, never
    in the file, so this reads LiteRT's private node list. Other nodes keep
    their op index and the names `Op.name` uses.

    Args:
        interpreter: an `ai_edge_litert.interpreter.Interpreter` with tensors
            allocated (delegates are applied then).

    Returns:
        A list of `Node(index, name, inputs, outputs)`, tensor indices as ints.
    """
    return [Node(int(node["index"]), node["op_name"], _ints(node["inputs"]),
                 _ints(node["outputs"]))
            # LiteRT lists its nodes after delegation only through this private
            # method; this is the one place that calls it (pyproject.toml allows it here).
            for node in interpreter._get_ops_details()]


def _ints(values):
    return tuple(int(v) for v in values) if values is not None else ()


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _op(index, op, model):
    code = model.operatorCodes[op.opcodeIndex]
    # Builtin codes above 127 live in `builtinCode`; older files only fill the
    # deprecated int8 field, so the larger of the two is the real code.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = (f"CUSTOM:{_text(code.customCode)}" if builtin == schema.BuiltinOperator.CUSTOM
            else enum_name("BuiltinOperator", builtin))
    return Op(index=index, name=name, version=int(code.version), inputs=_ints(op.inputs),
              outputs=_ints(op.outputs), options=op.builtinOptions)


def _tensor(index, tensor, model, raw, source):
    shape = _ints(tensor.shape)
    signature = _ints(tensor.shapeSignature)
    q = tensor.quantization
    scales = tuple(float(s) for s in q.scale) if q is not None and q.scale is not None else ()
    zero_points = _ints(q.zeroPoint) if q is not None and scales else ()
    data = _constant_data(tensor, model, raw, source)
    return Tensor(index=index, name=_text(tensor.name),
                  dtype=enum_name("TensorType", tensor.type), shape=shape,
                  shape_signature=signature or shape, scales=scales, zero_points=zero_points,
                  is_constant=data is not None or tensor.externalBuffer > 0, data=data)


def _constant_data(tensor, model, raw, source):
    """The tensor's constant bytes (a view, not a copy), or None if computed at run time."""
    buffers = model.buffers or []
    if not 0 < tensor.buffer < len(buffers):
        return None  # buffer 0 is the schema's empty sentinel
    buffer = buffers[tensor.buffer]
    if buffer.data is not None and len(buffer.data):
        return memoryview(np.asarray(buffer.data, dtype=np.uint8))
    if buffer.offset > 1:
        # Models over 2 GB keep buffers after the flatbuffer, addressed by offset.
        if buffer.offset + buffer.size > len(raw):
            raise IndexError(f"buffer {tensor.buffer} ends at byte {buffer.offset + buffer.size}"
                             f", past the end of {source}")
        return memoryview(raw)[buffer.offset:buffer.offset + buffer.size]
    return None
