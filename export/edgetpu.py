"""Checks a .tflite file against the Edge TPU compiler's documented requirements.

Coral's "TensorFlow models on the Edge TPU" (coral.ai/docs/edgetpu/models-intro)
asks for 8-bit quantized tensors of static size, at most three dimensions larger
than 1 (so batch 1), and operations from a table with per-op limitations. The
compiler maps ops in order up to the first one it cannot map; that op and every
op after it run on the CPU. `check` applies those rules to the file itself and,
where `edgetpu_compiler` is installed, runs it to confirm.

    >>> from export import edgetpu
    >>> result = edgetpu.check("runs/x/resnet20_int8.tflite")
    >>> result["compatible"], result["first_cpu_op"]
"""

import pathlib
import re
import shutil
import subprocess

import numpy as np
from ai_edge_litert import schema_py_generated as schema

# The supported-operations table, keyed by TFLite builtin name, with each
# documented limitation in our words ("" where none is documented). Ops whose
# limitation can be read from the file also get a check in `_OP_CHECKS`.
SUPPORTED_OPS = {
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": ("no fused activation function; a constant input is allowed only "
                      "as one of exactly two inputs and must be all zeros"),
    "CONV_2D": "same dilation in x and y",
    "DEPTHWISE_CONV_2D": "same dilation in x and y",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": ("default weights format only; the output has one dimension "
                        "larger than 1"),
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "unidirectional LSTM only",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": ("no reduction over the batch dimension; reducing over channels needs a "
             "multiple of 4 channels"),
    "MINIMUM": "",
    "MUL": "",
    "PACK": "no packing along the batch dimension",
    "PAD": "no padding of the batch dimension",
    "PRELU": "alpha varies along the innermost dimension only",
    "QUANTIZE": "",
    "REDUCE_MAX": "no reduction over the batch dimension",
    "REDUCE_MIN": "no reduction over the batch dimension",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "some reshapes of large tensors are left to the CPU",
    "RESIZE_BILINEAR": ("3-dimensional input and output; some sizes are left to the "
                        "CPU to keep precision"),
    "RESIZE_NEAREST_NEIGHBOR": ("3-dimensional input and output; some sizes are left "
                                "to the CPU to keep precision"),
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "1-D input (leading dimensions of size 1) of at most 16,000 elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "no splitting along the batch dimension",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "only drops leading dimensions of size 1 (no relayout)",
    "STRIDED_SLICE": "all strides 1, ellipsis mask 0 and new-axis mask 0",
    "SUB": "",
    "SUM": "no reduction over the batch dimension",
    "TANH": "",
    "TRANSPOSE": "listed in the current table; older compiler releases left it on the CPU",
    "TRANSPOSE_CONV": "",
}

# The custom op that `edgetpu_compiler` writes: the file is already compiled.
_COMPILED_OP = "edgetpu-custom-op"
_QUANTIZED = {"INT8", "UINT8"}
# Integer constants that are parameters, not data: int32 biases (the TFLite
# quantization spec keeps them 32-bit), paddings, axes and shapes.
_PARAM_TYPES = {"INT8", "UINT8", "INT32", "INT64"}
_SOFTMAX_MAX_ELEMENTS = 16000
_COMPILER = "edgetpu_compiler"
_INSTALL_HINT = ("install it from https://coral.ai/docs/edgetpu/compiler/ "
                 "(Debian/Ubuntu on x86-64) to confirm this check")

_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
_TYPE_NAMES = {code: name for name, code in vars(schema.TensorType).items()
               if not name.startswith("_")}
_NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
                "INT64": np.int64, "FLOAT32": np.float32}


class _Graph:
    """Read access to the main subgraph's tensors, constants and options."""

    def __init__(self, raw, model):
        self.raw = raw
        self.model = model
        self.subgraph = model.subgraphs[0]
        self.tensors = self.subgraph.tensors or []

    def name(self, t):
        name = self.tensors[t].name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)

    def dtype(self, t):
        return _TYPE_NAMES.get(self.tensors[t].type, f"type{self.tensors[t].type}")

    def shape(self, t):
        shape = self.tensors[t].shape
        return [int(d) for d in shape] if shape is not None else []

    def signature(self, t):
        sig = self.tensors[t].shapeSignature
        return [int(d) for d in sig] if sig is not None and len(sig) else self.shape(t)

    def _buffer(self, t):
        index = self.tensors[t].buffer
        buffers = self.model.buffers or []
        return buffers[index] if 0 < index < len(buffers) else None

    def is_constant(self, t):
        buffer = self._buffer(t)
        has_data = buffer is not None and (
            (buffer.data is not None and len(buffer.data) > 0) or buffer.offset > 1)
        return has_data or self.tensors[t].externalBuffer > 0

    def value(self, t):
        """The constant's values as a numpy array, or None where unreadable."""
        buffer = self._buffer(t)
        dtype = _NUMPY_TYPES.get(self.dtype(t))
        if buffer is None or dtype is None:
            return None
        if buffer.data is not None and len(buffer.data):
            data = np.asarray(buffer.data, dtype=np.uint8).tobytes()
        elif buffer.offset > 1:
            # Models over 2 GB keep buffers after the flatbuffer, addressed by offset.
            data = self.raw[buffer.offset:buffer.offset + buffer.size]
        else:
            return None
        values = np.frombuffer(data, dtype=dtype)
        shape = self.shape(t)
        return values.reshape(shape) if int(np.prod(shape)) == values.size else values

    def quantized(self, t):
        q = self.tensors[t].quantization
        return q is not None and q.scale is not None and len(q.scale) > 0


def _load(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .tflite file at {path}.")
    raw = path.read_bytes()
    if len(raw) < 8 or not schema.Model.ModelBufferHasIdentifier(raw, 0):
        raise ValueError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier); "
                         f"pass a .tflite file written by TFLiteConverter.")
    try:
        model = schema.ModelT.InitFromPackedBuf(raw, 0)
    except (IndexError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is a truncated or corrupt TFLite file: {error}.") from error
    if not model.subgraphs:
        raise ValueError(f"{path} has no subgraph: it holds no model to check.")
    return raw, model


def _op_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    # Builtin codes above 127 live in `builtinCode`; older files only fill the
    # deprecated int8 field, so the larger of the two is the real code.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        custom = custom.decode("utf-8", "replace") if isinstance(custom, bytes) else custom
        return f"CUSTOM:{custom}", code.version
    return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}"), code.version


def _tensor_problems(graph, op):
    """Reasons the op's tensors break the general rules: type and shape."""
    problems, not_quantized = [], []
    for role, indices in (("input", op.inputs), ("output", op.outputs)):
        for t in (indices if indices is not None else []):
            if t < 0:
                continue  # optional operand left out, e.g. a bias-free FULLY_CONNECTED
            name, dtype = graph.name(t), graph.dtype(t)
            if graph.is_constant(t):
                if dtype not in _PARAM_TYPES:
                    not_quantized.append(f"constant '{name}' {dtype}")
                continue
            if dtype not in _QUANTIZED:
                not_quantized.append(f"{role} '{name}' {dtype}")
                continue
            if not graph.quantized(t):
                problems.append(f"{role} '{name}' is {dtype} without quantization "
                                f"parameters")
            signature = graph.signature(t)
            if any(d < 0 for d in signature[1:]):
                problems.append(f"{role} '{name}' has a dynamic size {signature}: sizes "
                                f"must be fixed at compile time")
            shape = graph.shape(t)
            if len(shape) > 3 and any(d > 1 for d in shape[:-3]):
                problems.append(f"{role} '{name}' has shape {shape}: only the 3 innermost "
                                f"dimensions may be larger than 1 (batch must be 1)")
    if not_quantized:
        problems.insert(0, "tensors not 8-bit quantized (the Edge TPU runs int8/uint8 "
                           "only): " + ", ".join(not_quantized))
    return problems


def _options(op):
    return op.builtinOptions


def _no_fused_activation(graph, op):
    activation = getattr(_options(op), "fusedActivationFunction", 0)
    if activation:
        names = {v: k for k, v in vars(schema.ActivationFunctionType).items()
                 if not k.startswith("_")}
        return f"fused activation {names.get(activation, activation)} is not supported here"
    return None


def _same_dilation(graph, op):
    options = _options(op)
    w, h = getattr(options, "dilationWFactor", 1), getattr(options, "dilationHFactor", 1)
    return None if w == h else f"dilation differs in x ({w}) and y ({h})"


def _concatenation(graph, op):
    reason = _no_fused_activation(graph, op)
    if reason:
        return reason
    constants = [t for t in op.inputs if t >= 0 and graph.is_constant(t)]
    if not constants:
        return None
    if len(op.inputs) != 2:
        return (f"a constant input is allowed only with exactly 2 inputs, "
                f"got {len(op.inputs)}")
    value = graph.value(constants[0])
    # A quantized zero is stored as the zero point, so compare against that.
    q = graph.tensors[constants[0]].quantization
    zero_point = (int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None
                  and len(q.zeroPoint) else 0)
    if value is None or np.any(value.astype(np.int64) != zero_point):
        return "the constant input is not all zeros"
    return None


def _fully_connected(graph, op):
    options = _options(op)
    if getattr(options, "weightsFormat", 0) != schema.FullyConnectedOptionsWeightsFormat.DEFAULT:
        return "weights are in a shuffled format; only the default format maps"
    shape = graph.shape(op.outputs[0])
    if sum(d > 1 for d in shape) > 1:
        return f"output shape {shape} has more than one dimension larger than 1"
    return None


def _axes(graph, op, position=1):
    """The op's constant axes as non-negative ints, or None if not constant."""
    if len(op.inputs) <= position or op.inputs[position] < 0:
        return None
    value = graph.value(op.inputs[position])
    if value is None:
        return None
    rank = len(graph.shape(op.inputs[0]))
    return sorted({int(a) % rank for a in np.ravel(value)}) if rank else []


def _no_batch_axis(graph, op, position=1, verb="reduces"):
    axes = _axes(graph, op, position)
    if axes is None:
        return "its axes are not a compile-time constant"
    return f"{verb} the batch dimension (axes {axes})" if 0 in axes else None


def _mean(graph, op):
    reason = _no_batch_axis(graph, op)
    if reason:
        return reason
    shape = graph.shape(op.inputs[0])
    axes = _axes(graph, op)
    if shape and len(shape) - 1 in axes and shape[-1] % 4:
        return f"reduces over {shape[-1]} channels, not a multiple of 4"
    return None


def _pad(graph, op):
    paddings = graph.value(op.inputs[1]) if len(op.inputs) > 1 else None
    if paddings is None:
        return "its paddings are not a compile-time constant"
    if np.any(np.asarray(paddings).reshape(-1, 2)[0] != 0):
        return "pads the batch dimension"
    return None


def _pad_caveat(graph, op):
    paddings = graph.value(op.inputs[1]) if len(op.inputs) > 1 else None
    rows = np.asarray(paddings).reshape(-1, 2) if paddings is not None else np.zeros((0, 2))
    if len(rows) == 4 and np.any(rows[3] != 0):
        # ResNet's parameter-free shortcut (option A) pads channels this way.
        return ("pads the channel dimension: the current table only rules out the "
                "batch dimension, older tables allowed x/y padding only")
    return None


def _pack(graph, op):
    axis = getattr(_options(op), "axis", 0)
    return "packs along the batch dimension" if axis == 0 else None


def _split(graph, op):
    return _no_batch_axis(graph, op, position=0, verb="splits along")


def _softmax(graph, op):
    shape = graph.shape(op.inputs[0])
    if any(d > 1 for d in shape[:-1]):
        return f"input shape {shape} is not 1-D (leading dimensions must be 1)"
    if shape and shape[-1] > _SOFTMAX_MAX_ELEMENTS:
        return f"{shape[-1]} elements, more than {_SOFTMAX_MAX_ELEMENTS}"
    return None


def _squeeze(graph, op):
    shape = graph.shape(op.inputs[0])
    if not shape:
        return None
    dims = getattr(_options(op), "squeezeDims", None)
    dropped = ({int(d) % len(shape) for d in dims} if dims is not None and len(dims)
               else {i for i, d in enumerate(shape) if d == 1})
    leading = set(range(len(dropped)))
    return None if dropped == leading else (
        f"drops dimensions {sorted(dropped)} of {shape}, not only leading ones")


def _strided_slice(graph, op):
    options = _options(op)
    if getattr(options, "ellipsisMask", 0) or getattr(options, "newAxisMask", 0):
        return "uses an ellipsis or new-axis mask"
    strides = graph.value(op.inputs[3]) if len(op.inputs) > 3 else None
    if strides is None:
        return "its strides are not a compile-time constant"
    return None if np.all(strides == 1) else f"strides {np.ravel(strides).tolist()} are not all 1"


def _prelu(graph, op):
    alpha = graph.shape(op.inputs[1]) if len(op.inputs) > 1 else []
    return None if sum(d > 1 for d in alpha[:-1]) == 0 else (
        f"alpha shape {alpha} varies along more than the innermost dimension")


def _resize(graph, op):
    shape = graph.shape(op.inputs[0])
    return None if sum(d > 1 for d in shape) <= 3 else f"input shape {shape} is not 3-D"


def _constant_weights(graph, op):
    """Parameters must be constants known at compile time (a documented rule)."""
    for t in op.inputs[1:]:
        if t >= 0 and not graph.is_constant(t):
            return f"weights or bias '{graph.name(t)}' are not a compile-time constant"
    return None


def _constant_filter(graph, op):
    """TRANSPOSE_CONV's operands are (output shape, filter, input[, bias])."""
    filters = op.inputs[1:2]
    return next((f"filter '{graph.name(t)}' is not a compile-time constant"
                 for t in filters if t >= 0 and not graph.is_constant(t)), None)


def _both(*checks):
    def check(graph, op):
        return next((r for r in (c(graph, op) for c in checks) if r), None)
    return check


_OP_CHECKS = {
    "AVERAGE_POOL_2D": _no_fused_activation,
    "MAX_POOL_2D": _no_fused_activation,
    "CONCATENATION": _concatenation,
    "CONV_2D": _both(_same_dilation, _constant_weights),
    "DEPTHWISE_CONV_2D": _both(_same_dilation, _constant_weights),
    "FULLY_CONNECTED": _both(_fully_connected, _constant_weights),
    "TRANSPOSE_CONV": _constant_filter,
    "MEAN": _mean,
    "SUM": _no_batch_axis,
    "REDUCE_MAX": _no_batch_axis,
    "REDUCE_MIN": _no_batch_axis,
    "PAD": _pad,
    "PACK": _pack,
    "SPLIT": _split,
    "SOFTMAX": _softmax,
    "SQUEEZE": _squeeze,
    "STRIDED_SLICE": _strided_slice,
    "PRELU": _prelu,
    "RESIZE_BILINEAR": _resize,
    "RESIZE_NEAREST_NEIGHBOR": _resize,
}


# Limits that hold but deserve a word in the report (they are not failures).
_CAVEATS = {"PAD": _pad_caveat}


def _check_op(graph, index, op, model):
    name, version = _op_name(model, op)
    op.inputs = [] if op.inputs is None else [int(t) for t in op.inputs]
    outputs = [t for t in (op.outputs if op.outputs is not None else []) if t >= 0]
    entry = {"index": index, "op": name, "version": int(version),
             "output": graph.name(outputs[0]) if outputs else None}
    if name == f"CUSTOM:{_COMPILED_OP}":
        return {**entry, "supported": True,
                "reason": "already compiled for the Edge TPU by edgetpu_compiler"}
    if name == "DEQUANTIZE":
        source = (f"'{graph.name(op.inputs[0])}' ({graph.dtype(op.inputs[0])})" if op.inputs
                  else "its input")
        target = graph.dtype(outputs[0]) if outputs else "float"
        return {**entry, "supported": False,
                "reason": f"DEQUANTIZE turns {source} into {target}: the model is not fully "
                          f"integer from here on"}
    if name not in SUPPORTED_OPS:
        return {**entry, "supported": False,
                "reason": f"{name} is not in the Edge TPU's supported operations"}
    problems = _tensor_problems(graph, op)
    if not problems and name in _OP_CHECKS:
        try:
            reason = _OP_CHECKS[name](graph, op)
        except IndexError:
            # Operands missing against the op's TFLite definition: say so, do not crash.
            reason = "its operands do not match the TFLite definition of the op"
        if reason:
            problems.append(f"{name}: {reason} (documented limit: {SUPPORTED_OPS[name]})")
    if problems:
        return {**entry, "supported": False, "reason": "; ".join(problems)}
    reason = "in the supported-operations table"
    if name == "QUANTIZE" and op.inputs and outputs:
        reason = (f"requantizes {graph.dtype(op.inputs[0])} to {graph.dtype(outputs[0])} "
                  f"(Quantize is supported)")
    elif SUPPORTED_OPS[name]:
        reason += f"; documented limit holds: {SUPPORTED_OPS[name]}"
    try:
        caveat = _CAVEATS[name](graph, op) if name in _CAVEATS else None
    except IndexError:
        caveat = None
    if caveat:
        reason += f"; note: {caveat}"
    return {**entry, "supported": True, "reason": reason}


def _listing(indices, limit=6):
    shown = ", ".join(f"#{i}" for i in indices[:limit])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > limit else "")


def _notes(graph, model, ops):
    notes = []
    for t in list(graph.subgraph.inputs) + list(graph.subgraph.outputs):
        signature, shape = graph.signature(t), graph.shape(t)
        if not any(d < 0 for d in signature):
            continue
        what = ("a dynamic batch dimension" if all(d >= 0 for d in signature[1:])
                else "dynamic dimensions")
        notes.append(f"'{graph.name(t)}' has {what} in its shape signature {signature}; the "
                     f"compiler uses the stored size {shape}, but delegates that need static "
                     f"sizes want them fixed (batch 1) at conversion")
        break
    if not ops:
        notes.append("the main subgraph has no operators: there is nothing to map")
    if len(model.subgraphs) > 1:
        notes.append(f"the file has {len(model.subgraphs)} subgraphs; only the main one "
                     f"is checked, and the compiler maps a single subgraph")
    for name in ("QUANTIZE", "DEQUANTIZE"):
        found = [op["index"] for op in ops if op["op"] == name]
        if found:
            notes.append(f"{name} ops at {_listing(found)}: "
                         + ("type conversions, mapped when they convert between 8-bit types"
                            if name == "QUANTIZE" else "they output float, which the Edge TPU "
                            "cannot run"))
    caveats = [op["index"] for op in ops if "; note: " in op["reason"]]
    if caveats:
        notes.append(f"ops {_listing(caveats)} need the current supported-ops table (older "
                     f"compilers may leave them on the CPU); see each op's reason")
    return notes


def check(path, *, out_dir=None, run_compiler=True, timeout_s=300):
    """Checks a .tflite file against the Edge TPU's documented requirements.

    Every op of the main subgraph is checked in execution order against the
    supported-operations table, its documented limitation where the file
    shows it (fused activations, dilations, constant axes, paddings, strides)
    and the general rules: 8-bit quantized tensors, static sizes, at most three
    dimensions larger than 1. The compiler stops mapping at the first op it
    cannot map, so that op and all after it are placed on the CPU.

    Args:
        path: str or Path, the .tflite file.
        out_dir: where the compiler writes `<name>_edgetpu.tflite` and its log;
            default: next to `path`.
        run_compiler: run `edgetpu_compiler` when it is on PATH.
        timeout_s: seconds the compiler may run.

    Returns:
        A dict: `compatible` (bool: every op maps by the rules, and, where the
        compiler ran, it mapped every op), `first_cpu_op` (int index of the
        first op placed on the CPU, or None), `mapped_ops_estimate` and
        `total_ops` (ints), `ops` (a list of dicts `index`, `op`, `version`,
        `output` (tensor name), `supported`, `reason`, `placement` (`edgetpu`
        or `cpu`)), `notes` (list of str), `file` (str) and `compiler`: None
        when `run_compiler` is False, else a dict with `available` and, when
        it ran, `ok`, `version`, `mapped_ops`, `total_ops`, `cpu_ops`,
        `subgraphs`, `operators` (its per-op-type table), `path` (the
        compiled file) and `log`; when unavailable, `reason`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a TFLite flatbuffer.
    """
    raw, model = _load(path)
    graph = _Graph(raw, model)
    ops = [_check_op(graph, i, op, model)
           for i, op in enumerate(graph.subgraph.operators or [])]
    first_cpu_op = next((op["index"] for op in ops if not op["supported"]), None)
    for op in ops:
        op["placement"] = ("edgetpu" if first_cpu_op is None or op["index"] < first_cpu_op
                           else "cpu")
    compiler = _run_compiler(path, out_dir=out_dir, timeout_s=timeout_s) if run_compiler \
        else None
    notes = _notes(graph, model, ops)
    if compiler is not None and not compiler.get("ran"):
        notes.append("the compiler did not run: op versions are not checked, and recent "
                     "converters may emit op versions the last compiler release rejects")
    compatible = first_cpu_op is None and bool(ops)
    if compiler and compiler.get("ran"):
        compatible = compatible and compiler["ok"] and \
            compiler["mapped_ops"] is not None and compiler["mapped_ops"] == compiler["total_ops"]
    return {
        "file": str(path),
        "compatible": compatible,
        "first_cpu_op": first_cpu_op,
        "mapped_ops_estimate": len(ops) if first_cpu_op is None else first_cpu_op,
        "total_ops": len(ops),
        "ops": ops,
        "notes": notes,
        "compiler": compiler,
    }


def _run_compiler(path, *, out_dir, timeout_s):
    executable = shutil.which(_COMPILER)
    if executable is None:
        return {"available": False, "ran": False,
                "reason": f"{_COMPILER} not found on PATH; {_INSTALL_HINT}",
                "mapped_ops": None, "total_ops": None, "path": None}
    path = pathlib.Path(path)
    out_dir = pathlib.Path(out_dir) if out_dir is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [executable, "-s", "-o", str(out_dir), str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"available": True, "ran": True, "ok": False, "command": command,
                "reason": f"{_COMPILER} ran over {timeout_s} s",
                "mapped_ops": None, "total_ops": None, "path": None}
    compiled = out_dir / f"{path.stem}_edgetpu.tflite"
    log = out_dir / f"{path.stem}_edgetpu.log"
    text = done.stdout + "\n" + done.stderr
    parsed = parse_compiler_output(text + ("\n" + log.read_text(errors="replace")
                                           if log.is_file() else ""))
    ok = done.returncode == 0 and compiled.is_file()
    result = {"available": True, "ran": True, "ok": ok, "command": command,
              "returncode": done.returncode, **parsed,
              "path": str(compiled) if compiled.is_file() else None,
              "log": str(log) if log.is_file() else None}
    if not ok:
        result["reason"] = "\n".join(text.strip().splitlines()[-5:])
    return result


def parse_compiler_output(text):
    """Reads how many ops `edgetpu_compiler` mapped from its stdout or log.

    The summary gives "Total number of operations" and, when some ops stay on
    the CPU, "Number of operations that will run on Edge TPU"; when every op
    maps only the per-operator table ("Operator Count Status") says so, hence
    the fallback to summing its "Mapped to Edge TPU" rows.

    Args:
        text: str, the compiler's stdout, log file, or both concatenated.

    Returns:
        A dict: `version` (str or None), `total_ops`, `mapped_ops`, `cpu_ops`,
        `subgraphs` (ints or None) and `operators` (list of dicts `op`,
        `count`, `status`; a table printed twice is read once).
    """
    def number(pattern):
        match = re.search(pattern, text)
        return int(match.group(1)) if match else None

    version = re.search(r"Edge TPU Compiler version (\S+)", text)
    operators, seen_tables, in_table = [], 0, False
    for line in text.splitlines():
        if re.match(r"\s*Operator\s+Count\s+Status\s*$", line):
            seen_tables += 1
            in_table = seen_tables == 1
            continue
        row = re.match(r"\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", line) if in_table else None
        if row:
            operators.append({"op": row.group(1), "count": int(row.group(2)),
                              "status": row.group(3)})
        elif in_table and line.strip() and operators:
            in_table = False
    total = number(r"Total number of operations:\s*(\d+)")
    mapped = number(r"Number of operations that will run on Edge TPU:\s*(\d+)")
    if mapped is None and operators:
        mapped = sum(row["count"] for row in operators if row["status"] == "Mapped to Edge TPU")
    if total is None and operators:
        total = sum(row["count"] for row in operators)
    cpu = number(r"Number of operations that will run on CPU:\s*(\d+)")
    if cpu is None and total is not None and mapped is not None:
        cpu = total - mapped
    return {"version": version.group(1) if version else None, "total_ops": total,
            "mapped_ops": mapped, "cpu_ops": cpu,
            "subgraphs": number(r"Number of Edge TPU subgraphs:\s*(\d+)"),
            "operators": operators}
