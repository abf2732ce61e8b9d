"""Runs Coral's `edgetpu_compiler` on a .tflite file and reads what it mapped.

The compiler (coral.ai/docs/edgetpu/compiler) is Debian/Ubuntu x86-64 only, so
`run` reports it unavailable elsewhere rather than failing; `edgetpu.check`
applies the documented rules either way.

    >>> from export import edgetpu_compiler
    >>> result = edgetpu_compiler.run("runs/x/resnet20_int8.tflite", out_dir="runs/x")
    >>> result["mapped_ops"], result["total_ops"]
"""

import pathlib
import re
import shutil
import subprocess

COMPILER = "edgetpu_compiler"
_INSTALL_HINT = ("install it from https://coral.ai/docs/edgetpu/compiler/ "
                 "(Debian/Ubuntu on x86-64) to confirm this check")


def run(path, *, out_dir=None, timeout_s=300):
    """Compiles `path` with `edgetpu_compiler` when it is on PATH.

    Args:
        path: str or Path, the .tflite file.
        out_dir: where the compiler writes `<name>_edgetpu.tflite` and its
            log; default: next to `path`.
        timeout_s: seconds the compiler may run.

    Returns:
        A dict: `available` and `ran` (bools), `mapped_ops`, `total_ops` and
        `path` (the compiled file, or None); when it ran also `ok`,
        `command`, `returncode` and the fields of `parse_compiler_output`,
        and `log`; `reason` when it is unavailable or failed.
    """
    executable = shutil.which(COMPILER)
    if executable is None:
        return {"available": False, "ran": False,
                "reason": f"{COMPILER} not found on PATH; {_INSTALL_HINT}",
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
                "reason": f"{COMPILER} ran over {timeout_s} s",
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
