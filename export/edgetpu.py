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

import numpy as np

from export import edgetpu_compiler, tflite_file

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

# The highest version of each op that edgetpu_compiler 16.0 (16.0.384591198, the
# last release) is known to parse; a file with any op above it is refused whole
# ("Didn't find op for builtin opcode 'CONV_2D' version '6'", then "Model could
# not be parsed"). The compiler is closed source, so the limits are derived:
# Coral's 2021 release of libedgetpu, which ships with it, was built against
# TensorFlow 2.5.0, and TF Lite's op-version registry
# (tensorflow/lite/tools/versioning/runtime_version.cc) gives the TF release
# that introduced each op version; a limit is the highest version introduced in
# 2.5.0 or before. The google-coral/edgetpu issues quoted in `_REFUSED` agree.
COMPILER_VERSION = "16.0"
_REGISTRY = ("TF Lite runtime_version.cc: newest version dated TensorFlow <= 2.5.0, "
             "libedgetpu's TensorFlow for compiler 16.0")
MAX_OP_VERSIONS = {
    "ADD": 3, "AVERAGE_POOL_2D": 3, "CONCATENATION": 3, "CONV_2D": 5,
    "DEPTHWISE_CONV_2D": 6, "DEQUANTIZE": 4, "EXPAND_DIMS": 1, "FULLY_CONNECTED": 9,
    "L2_NORMALIZATION": 2, "LOGISTIC": 3, "MAXIMUM": 4, "MAX_POOL_2D": 3, "MEAN": 3,
    "MINIMUM": 4, "MUL": 4, "PACK": 3, "PAD": 3, "PRELU": 1, "QUANTIZE": 2,
    "REDUCE_MAX": 3, "REDUCE_MIN": 3, "RELU": 3, "RELU6": 3, "RELU_N1_TO_1": 1,
    "RESHAPE": 1, "RESIZE_BILINEAR": 4, "RESIZE_NEAREST_NEIGHBOR": 4, "RSQRT": 2,
    "SLICE": 5, "SOFTMAX": 3, "SPACE_TO_DEPTH": 2, "SPLIT": 4, "SQUARED_DIFFERENCE": 2,
    "SQUEEZE": 2, "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "TANH": 3, "TRANSPOSE": 5,
    "TRANSPOSE_CONV": 3, "UNIDIRECTIONAL_SEQUENCE_LSTM": 3,
}
# Refusals by edgetpu_compiler 16.0.384591198 reported in google-coral/edgetpu issues.
_REFUSED = {"CONV_2D": "#631 (version 6)", "QUANTIZE": "#879 (version 3)",
            "TRANSPOSE_CONV": "#845 (version 4)"}
_VERSION_FIX = ("to compile it, convert with a TFLiteConverter that writes older op "
                "versions (TensorFlow 2.5's knows only these), or keep this file for the CPU")

# The custom op that `edgetpu_compiler` writes: the file is already compiled.
_COMPILED_OP = "edgetpu-custom-op"
_QUANTIZED = {"INT8", "UINT8"}
# Integer constants that are parameters, not data: int32 biases (the TFLite
# quantization spec keeps them 32-bit), paddings, axes and shapes.
_PARAM_TYPES = {"INT8", "UINT8", "INT32", "INT64"}
_SOFTMAX_MAX_ELEMENTS = 16000
def _tensor_problems(graph, op):
    """Reasons the op's tensors break the general rules: type and shape."""
    problems, not_quantized = [], []
    for role, indices in (("input", op.inputs), ("output", op.outputs)):
        for t in (indices if indices is not None else []):
            if t < 0:
                continue  # optional operand left out, e.g. a bias-free FULLY_CONNECTED
            name, dtype = graph.tensors[t].name, graph.tensors[t].dtype
            if graph.tensors[t].is_constant:
                if dtype not in _PARAM_TYPES:
                    not_quantized.append(f"constant '{name}' {dtype}")
                continue
            if dtype not in _QUANTIZED:
                not_quantized.append(f"{role} '{name}' {dtype}")
                continue
            if not graph.tensors[t].quantized:
                problems.append(f"{role} '{name}' is {dtype} without quantization "
                                f"parameters")
            signature = list(graph.tensors[t].shape_signature)
            if any(d < 0 for d in signature[1:]):
                problems.append(f"{role} '{name}' has a dynamic size {signature}: sizes "
                                f"must be fixed at compile time")
            shape = list(graph.tensors[t].shape)
            if len(shape) > 3 and any(d > 1 for d in shape[:-3]):
                problems.append(f"{role} '{name}' has shape {shape}: only the 3 innermost "
                                f"dimensions may be larger than 1 (batch must be 1)")
    if not_quantized:
        problems.insert(0, "tensors not 8-bit quantized (the Edge TPU runs int8/uint8 "
                           "only): " + ", ".join(not_quantized))
    return problems


def _no_fused_activation(graph, op):
    activation = getattr(op.options, "fusedActivationFunction", 0)
    if activation:
        name = tflite_file.enum_name("ActivationFunctionType", activation)
        return f"fused activation {name} is not supported here"
    return None


def _same_dilation(graph, op):
    options = op.options
    w, h = getattr(options, "dilationWFactor", 1), getattr(options, "dilationHFactor", 1)
    return None if w == h else f"dilation differs in x ({w}) and y ({h})"


def _concatenation(graph, op):
    reason = _no_fused_activation(graph, op)
    if reason:
        return reason
    constants = [t for t in op.inputs if t >= 0 and graph.tensors[t].is_constant]
    if not constants:
        return None
    if len(op.inputs) != 2:
        return (f"a constant input is allowed only with exactly 2 inputs, "
                f"got {len(op.inputs)}")
    value = graph.tensors[constants[0]].value
    # A quantized zero is stored as the zero point, so compare against that.
    zero_points = graph.tensors[constants[0]].zero_points
    zero_point = zero_points[0] if zero_points else 0
    if value is None or np.any(value.astype(np.int64) != zero_point):
        return "the constant input is not all zeros"
    return None


def _fully_connected(graph, op):
    options = op.options
    weights = tflite_file.enum_name("FullyConnectedOptionsWeightsFormat",
                                    getattr(options, "weightsFormat", 0))
    if weights != "DEFAULT":
        return "weights are in a shuffled format; only the default format maps"
    shape = list(graph.tensors[op.outputs[0]].shape)
    if sum(d > 1 for d in shape) > 1:
        return f"output shape {shape} has more than one dimension larger than 1"
    return None


def _axes(graph, op, position=1):
    """The op's constant axes as non-negative ints, or None if not constant."""
    if len(op.inputs) <= position or op.inputs[position] < 0:
        return None
    value = graph.tensors[op.inputs[position]].value
    if value is None:
        return None
    rank = len(list(graph.tensors[op.inputs[0]].shape))
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
    shape = list(graph.tensors[op.inputs[0]].shape)
    axes = _axes(graph, op)
    if shape and len(shape) - 1 in axes and shape[-1] % 4:
        return f"reduces over {shape[-1]} channels, not a multiple of 4"
    return None


def _pad(graph, op):
    paddings = graph.tensors[op.inputs[1]].value if len(op.inputs) > 1 else None
    if paddings is None:
        return "its paddings are not a compile-time constant"
    if np.any(np.asarray(paddings).reshape(-1, 2)[0] != 0):
        return "pads the batch dimension"
    return None


def _pad_caveat(graph, op):
    paddings = graph.tensors[op.inputs[1]].value if len(op.inputs) > 1 else None
    rows = np.asarray(paddings).reshape(-1, 2) if paddings is not None else np.zeros((0, 2))
    if len(rows) == 4 and np.any(rows[3] != 0):
        # ResNet's parameter-free shortcut (option A) pads channels this way.
        return ("pads the channel dimension: the current table only rules out the "
                "batch dimension, older tables allowed x/y padding only")
    return None


def _pack(graph, op):
    axis = getattr(op.options, "axis", 0)
    return "packs along the batch dimension" if axis == 0 else None


def _split(graph, op):
    return _no_batch_axis(graph, op, position=0, verb="splits along")


def _softmax(graph, op):
    shape = list(graph.tensors[op.inputs[0]].shape)
    if any(d > 1 for d in shape[:-1]):
        return f"input shape {shape} is not 1-D (leading dimensions must be 1)"
    if shape and shape[-1] > _SOFTMAX_MAX_ELEMENTS:
        return f"{shape[-1]} elements, more than {_SOFTMAX_MAX_ELEMENTS}"
    return None


def _squeeze(graph, op):
    shape = list(graph.tensors[op.inputs[0]].shape)
    if not shape:
        return None
    dims = getattr(op.options, "squeezeDims", None)
    dropped = ({int(d) % len(shape) for d in dims} if dims is not None and len(dims)
               else {i for i, d in enumerate(shape) if d == 1})
    leading = set(range(len(dropped)))
    return None if dropped == leading else (
        f"drops dimensions {sorted(dropped)} of {shape}, not only leading ones")


def _strided_slice(graph, op):
    options = op.options
    if getattr(options, "ellipsisMask", 0) or getattr(options, "newAxisMask", 0):
        return "uses an ellipsis or new-axis mask"
    strides = graph.tensors[op.inputs[3]].value if len(op.inputs) > 3 else None
    if strides is None:
        return "its strides are not a compile-time constant"
    return None if np.all(strides == 1) else f"strides {np.ravel(strides).tolist()} are not all 1"


def _prelu(graph, op):
    alpha = list(graph.tensors[op.inputs[1]].shape) if len(op.inputs) > 1 else []
    return None if sum(d > 1 for d in alpha[:-1]) == 0 else (
        f"alpha shape {alpha} varies along more than the innermost dimension")


def _resize(graph, op):
    shape = list(graph.tensors[op.inputs[0]].shape)
    return None if sum(d > 1 for d in shape) <= 3 else f"input shape {shape} is not 3-D"


def _constant_weights(graph, op):
    """Parameters must be constants known at compile time (a documented rule)."""
    for t in op.inputs[1:]:
        if t >= 0 and not graph.tensors[t].is_constant:
            return f"weights or bias '{graph.tensors[t].name}' are not a compile-time constant"
    return None


def _constant_filter(graph, op):
    """TRANSPOSE_CONV's operands are (output shape, filter, input[, bias])."""
    filters = op.inputs[1:2]
    return next((f"filter '{graph.tensors[t].name}' is not a compile-time constant"
                 for t in filters if t >= 0 and not graph.tensors[t].is_constant), None)


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


def version_limit(name):
    """(highest version edgetpu_compiler 16.0 parses, where that number comes from).

    Returns (None, None) for an op the table does not know.
    """
    if name not in MAX_OP_VERSIONS:
        return None, None
    source = _REGISTRY
    if name in _REFUSED:
        source += f"; a newer version refused in google-coral/edgetpu{_REFUSED[name]}"
    return MAX_OP_VERSIONS[name], source


def _check_op(graph, op):
    name, tensors = op.name, graph.tensors
    outputs = [t for t in op.outputs if t >= 0]
    max_version, source = version_limit(name)
    entry = {"index": op.index, "op": name, "version": op.version,
             "max_version": max_version, "max_version_source": source,
             "version_refused": max_version is not None and op.version > max_version,
             "output": tensors[outputs[0]].name if outputs else None}
    if entry["version_refused"]:
        return {**entry, "supported": False,
                "reason": f"{name} version {op.version} is newer than version {max_version}, "
                          f"the highest edgetpu_compiler {COMPILER_VERSION} is known to parse: "
                          f"it refuses the whole file; {_VERSION_FIX}"}
    if name == f"CUSTOM:{_COMPILED_OP}":
        return {**entry, "supported": True,
                "reason": "already compiled for the Edge TPU by edgetpu_compiler"}
    if name == "DEQUANTIZE":
        source = (f"'{tensors[op.inputs[0]].name}' ({tensors[op.inputs[0]].dtype})"
                  if op.inputs else "its input")
        target = tensors[outputs[0]].dtype if outputs else "float"
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
        reason = (f"requantizes {tensors[op.inputs[0]].dtype} to {tensors[outputs[0]].dtype} "
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


def _notes(graph, ops):
    notes = []
    for t in graph.inputs + graph.outputs:
        tensor = graph.tensors[t]
        signature, shape = list(tensor.shape_signature), list(tensor.shape)
        if not any(d < 0 for d in signature):
            continue
        what = ("a dynamic batch dimension" if all(d >= 0 for d in signature[1:])
                else "dynamic dimensions")
        notes.append(f"'{tensor.name}' has {what} in its shape signature {signature}; the "
                     f"compiler uses the stored size {shape}, but delegates that need static "
                     f"sizes want them fixed (batch 1) at conversion")
        break
    if not ops:
        notes.append("the main subgraph has no operators: there is nothing to map")
    if graph.num_subgraphs > 1:
        notes.append(f"the file has {graph.num_subgraphs} subgraphs; only the main one "
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

    Every op of the main subgraph is checked in execution order against its
    highest version edgetpu_compiler 16.0 parses (`MAX_OP_VERSIONS`), the
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
        first op the rules leave to the CPU, or None; where an op version is
        refused, that op: the compiler then maps nothing), `mapped_ops_estimate`
        and `total_ops` (ints), `ops` (a list of dicts `index`, `op`,
        `version`, `max_version` (the highest version edgetpu_compiler 16.0
        is known to parse, None where unknown), `max_version_source` (where
        that limit comes from, None where unknown), `version_refused`,
        `output` (tensor name), `supported`, `reason`, `placement` (`edgetpu`
        or `cpu`)), `notes` (list of str), `file` (str) and `compiler`: None
        when `run_compiler` is False, else a dict with `available` and, when
        it ran, `ok`, `version`, `mapped_ops`, `total_ops`, `cpu_ops`,
        `subgraphs`, `operators` (its per-op-type table), `path` (the
        compiled file) and `log`; when unavailable, `reason`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a TFLite flatbuffer, or is truncated.
    """
    graph = tflite_file.read(path)
    ops = [_check_op(graph, op) for op in graph.ops]
    refused = [op for op in ops if op["version_refused"]]
    first_cpu_op = next((op["index"] for op in refused or ops if not op["supported"]), None)
    # A refused op version stops the compiler from parsing the file: nothing maps.
    mapped = 0 if refused else len(ops) if first_cpu_op is None else first_cpu_op
    for op in ops:
        op["placement"] = "edgetpu" if op["index"] < mapped else "cpu"
    compiler = (edgetpu_compiler.run(path, out_dir=out_dir, timeout_s=timeout_s)
                if run_compiler else None)
    notes = _notes(graph, ops)
    if refused:
        listed = ", ".join(f"#{op['index']} {op['op']} v{op['version']} (max "
                           f"v{op['max_version']})" for op in refused[:6])
        notes.append(f"op versions edgetpu_compiler {COMPILER_VERSION} does not know: "
                     f"{listed}{' ...' if len(refused) > 6 else ''}; it refuses the whole "
                     f"file; {_VERSION_FIX}")
    unknown = sorted({op["op"] for op in ops if op["max_version"] is None})
    if compiler is not None and not compiler.get("ran"):
        notes.append(f"the compiler did not run: op versions are checked against the limits "
                     f"known for edgetpu_compiler {COMPILER_VERSION} only"
                     + (f" (none known for {', '.join(unknown)})" if unknown else ""))
    compatible = first_cpu_op is None and bool(ops)
    if compiler and compiler.get("ran"):
        compatible = compatible and compiler["ok"] and \
            compiler["mapped_ops"] is not None and compiler["mapped_ops"] == compiler["total_ops"]
    return {
        "file": str(path),
        "compatible": compatible,
        "first_cpu_op": first_cpu_op,
        "mapped_ops_estimate": mapped,
        "total_ops": len(ops),
        "ops": ops,
        "notes": notes,
        "compiler": compiler,
    }
