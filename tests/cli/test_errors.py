#!/usr/bin/python3
"""Bad input to the `stx` CLI: one clear error line, non-zero exit, no crash, no output file.

usage: test_errors.py --stx build/stx [--work DIR]
Builds its own broken inputs with onnx.helper and numpy (no committed binaries)."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper


def tiny_model(path, op="Relu", attrs=None, shape=(1, 3, 4, 4)):
    """A one-node model: input -> op -> output."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["input"], ["output"], name="the_node", **(attrs or {}))
    g = helper.make_graph([node], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)


def conv_model(path):
    """Conv with a weight initializer, for truncation tests."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3],
                           rng.standard_normal(8 * 27).astype(np.float32).tobytes(), raw=True)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    node = helper.make_node("Conv", ["input", "w"], ["output"], name="conv", pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "g", [x], [y], initializer=[w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


class Checker:
    def __init__(self, stx):
        self.stx = stx
        self.passed = 0
        self.failed = 0

    def expect_error(self, name, args, must_contain, out_file=None):
        r = subprocess.run([self.stx] + args, capture_output=True, text=True, timeout=120)
        err_lines = [l for l in r.stderr.splitlines() if l.strip()]
        problems = []
        if r.returncode <= 0:
            problems.append(f"exit code {r.returncode} (expected > 0; negative = killed by a signal)")
        if len(err_lines) != 1:
            problems.append(f"{len(err_lines)} stderr lines (expected 1): {r.stderr!r}")
        for s in must_contain:
            if s.lower() not in r.stderr.lower():
                problems.append(f"stderr lacks {s!r}: {r.stderr.strip()!r}")
        if out_file and os.path.exists(out_file):
            problems.append(f"output file {out_file} was written")
        if out_file:
            leftovers = [f for f in os.listdir(os.path.dirname(out_file) or ".")
                         if f.startswith(os.path.basename(out_file))]
            if leftovers:
                problems.append(f"left files behind: {leftovers}")
        if problems:
            self.failed += 1
            print(f"FAIL  {name}: " + "; ".join(problems))
        else:
            self.passed += 1
            print(f"PASS  {name}: {err_lines[0]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stx_err_")
    os.makedirs(work, exist_ok=True)
    c = Checker(os.path.abspath(a.stx))
    j = lambda *p: os.path.join(work, *p)

    good = j("relu.onnx")
    tiny_model(good)
    conv = j("conv.onnx")
    conv_model(conv)
    x = np.random.default_rng(1).standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.save(j("x.npy"), x)
    out = j("out.npy")

    # sanity: the good model runs (so the failures below are about the bad input)
    r = subprocess.run([c.stx, "run", good, j("x.npy"), "-o", out], capture_output=True, text=True)
    if r.returncode != 0 or not np.allclose(np.load(out), np.maximum(x, 0)):
        print(f"FAIL  sanity: good model did not run: {r.stderr}")
        c.failed += 1
    else:
        c.passed += 1
        print("PASS  sanity: good model runs and matches numpy")
    if os.path.exists(out):
        os.remove(out)

    # corrupt / truncated ONNX files
    data = open(conv, "rb").read()
    open(j("trunc.onnx"), "wb").write(data[: len(data) // 2])
    c.expect_error("truncated onnx", ["run", j("trunc.onnx"), j("x.npy"), "-o", out],
                   ["trunc.onnx"], out)
    open(j("garbage.onnx"), "wb").write(bytes(range(256)) * 7)
    c.expect_error("garbage onnx", ["run", j("garbage.onnx"), j("x.npy"), "-o", out],
                   ["garbage.onnx"], out)
    open(j("empty.onnx"), "wb").write(b"")
    c.expect_error("empty onnx", ["info", j("empty.onnx")], ["empty.onnx"])
    # an initializer whose raw_data is shorter than its shape
    m = onnx.load(conv)
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:100]
    onnx.save(m, j("short_init.onnx"))
    c.expect_error("short initializer", ["run", j("short_init.onnx"), j("x.npy"), "-o", out],
                   ["short_init.onnx", "'w'"], out)

    # unsupported op / attribute
    tiny_model(j("det.onnx"), op="Det")
    c.expect_error("unsupported op", ["run", j("det.onnx"), j("x.npy"), "-o", out],
                   ["Det", "the_node", "det.onnx"], out)
    tiny_model(j("badattr.onnx"), op="Relu", attrs={"frobnicate": 3})
    c.expect_error("unsupported attribute", ["info", j("badattr.onnx")],
                   ["frobnicate", "the_node", "Relu"])

    # .npy problems
    np.save(j("wrong_shape.npy"), np.zeros((1, 3, 5, 4), np.float32))
    c.expect_error("npy wrong shape", ["run", conv, j("wrong_shape.npy"), "-o", out],
                   ["input", "[1,3,5,4]"], out)
    np.save(j("wrong_dtype.npy"), np.zeros((1, 3, 8, 8), np.float64))
    c.expect_error("npy wrong dtype", ["run", conv, j("wrong_dtype.npy"), "-o", out],
                   ["float32", "float64"], out)
    np.save(j("c64.npy"), np.zeros((1, 3, 8, 8), np.complex64))
    c.expect_error("npy unsupported dtype", ["run", conv, j("c64.npy"), "-o", out],
                   ["c64.npy", "dtype"], out)
    raw = open(j("x.npy"), "rb").read()
    open(j("trunc.npy"), "wb").write(raw[:-10])
    c.expect_error("npy truncated", ["run", good, j("trunc.npy"), "-o", out], ["trunc.npy"], out)
    open(j("notnpy.npy"), "wb").write(b"hello world, not numpy")
    c.expect_error("npy bad magic", ["run", good, j("notnpy.npy"), "-o", out], ["notnpy.npy"], out)
    xn = x.copy()
    xn[0, 1, 2, 3] = np.nan
    np.save(j("nan.npy"), xn)
    c.expect_error("NaN input", ["run", good, j("nan.npy"), "-o", out], ["non-finite"], out)

    # missing files, bad flags
    c.expect_error("missing model", ["run", j("nope.onnx"), j("x.npy"), "-o", out],
                   ["nope.onnx"], out)
    c.expect_error("missing input", ["run", good, j("nope.npy"), "-o", out], ["nope.npy"], out)
    c.expect_error("bad flag", ["run", good, j("x.npy"), "--frobnicate"], ["--frobnicate"])
    c.expect_error("bad threads", ["run", good, j("x.npy"), "--threads", "zero"], ["--threads"])
    c.expect_error("bad command", ["frobnicate"], ["frobnicate"])
    c.expect_error("bad input shape flag", ["info", good, "--input-shape", "1,x"], ["--input-shape"])
    c.expect_error("unwritable output", ["run", good, j("x.npy"), "-o", j("no_dir", "o.npy")],
                   ["o.npy"])

    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
