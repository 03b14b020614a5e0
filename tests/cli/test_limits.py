#!/usr/bin/python3
"""Limits checked before allocating (issue 11, docs/robustness.md): absurd ranks, dimensions,
element counts, byte counts, external data and video frame sizes are refused with one clear
error line (exit > 0, no crash, no output file), and fast: nothing is allocated for them.

usage: test_limits.py --stx build/stx [--work DIR]
Builds every bad input itself (numpy, onnx.helper, hand-written .npy headers and PNG headers)."""
import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from test_errors import Checker


def npy_with_header(path, header, payload=b""):
    """A .npy file (format 1.0) with an arbitrary header dict text."""
    h = header.encode("latin1")
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + payload)


def save_model(path, nodes, inits, x_shape=(1, 3, 4, 4), inputs=None):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "g", inputs or [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def add_model(path, t):
    """input + t -> output, with t an initializer (TensorProto) of any declared shape."""
    save_model(path, [helper.make_node("Add", ["input", t.name], ["output"], name="add")], [t])


def png_header(path, w, h):
    """A PNG file with a valid signature and IHDR chunk (no image data): its size is read from
    the header alone."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(
        ">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stx_limits_")
    os.makedirs(work, exist_ok=True)
    c = Checker(os.path.abspath(a.stx))
    j = lambda *p: os.path.join(work, *p)
    out = j("out.npy")
    t0 = time.time()

    good = j("relu.onnx")
    save_model(good, [helper.make_node("Relu", ["input"], ["output"], name="relu")], [])
    np.save(j("x.npy"), np.zeros((1, 3, 4, 4), np.float32))

    # --- .npy: rank, dimensions, element and byte counts (header only, no data) ---
    npy_with_header(j("rank9.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }")
    c.expect_error("npy rank 9", ["run", good, j("rank9.npy"), "-o", out],
                   ["rank9.npy", "more than 8 dimensions"], out)
    npy_with_header(j("bigdim.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }")
    c.expect_error("npy dimension out of range", ["run", good, j("bigdim.npy"), "-o", out],
                   ["bigdim.npy", "dimension out of range"], out)
    npy_with_header(j("overflow.npy"), "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }")
    c.expect_error("npy element count overflows", ["run", good, j("overflow.npy"), "-o", out],
                   ["overflow.npy", "too large"], out)
    # 2^31 x 2^30 float64 = 2^64 bytes: wrapped to 0 before the fix
    npy_with_header(j("wrap.npy"), "{'descr': '<f8', 'fortran_order': False, 'shape': (2147483648, 1073741824), }")
    c.expect_error("npy byte count wraps around", ["run", good, j("wrap.npy"), "-o", out],
                   ["wrap.npy", "too large"], out)
    npy_with_header(j("short.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 4, 400000000), }",
                    b"\0" * 64)
    c.expect_error("npy data shorter than its shape", ["run", good, j("short.npy"), "-o", out],
                   ["short.npy", "truncated", "file has 64"], out)

    # --- ONNX initializers: rank, negative and overflowing dims, bytes vs the file ---
    def tensor(name, dims, raw=b"", dtype=TensorProto.FLOAT):
        t = TensorProto()
        t.name, t.data_type = name, dtype
        t.dims.extend(dims)
        t.raw_data = raw
        return t
    add_model(j("init_rank9.onnx"), tensor("w", [1] * 9))
    c.expect_error("initializer rank 9", ["info", j("init_rank9.onnx")],
                   ["init_rank9.onnx", "'w'", "rank 9 (max 8)"])
    add_model(j("init_neg.onnx"), tensor("w", [3, -4]))
    c.expect_error("initializer negative dimension", ["info", j("init_neg.onnx")],
                   ["init_neg.onnx", "'w'", "invalid shape"])
    add_model(j("init_overflow.onnx"), tensor("w", [1 << 31] * 3))
    c.expect_error("initializer element count overflows", ["info", j("init_overflow.onnx")],
                   ["init_overflow.onnx", "'w'", "invalid shape"])
    add_model(j("init_wrap.onnx"), tensor("w", [1 << 31, 1 << 30], dtype=TensorProto.DOUBLE))
    c.expect_error("initializer byte count wraps around", ["info", j("init_wrap.onnx")],
                   ["init_wrap.onnx", "'w'", "too large"])
    t = tensor("w", [1 << 30])
    t.ClearField("raw_data")
    t.float_data.extend([1.0, 2.0, 3.0])
    add_model(j("init_more_than_file.onnx"), t)
    c.expect_error("initializer declares more bytes than the file", ["info", j("init_more_than_file.onnx")],
                   ["init_more_than_file.onnx", "'w'", "more than the file holds"])
    x9 = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1] * 9)
    save_model(j("input_rank9.onnx"), [helper.make_node("Relu", ["input"], ["output"])], [],
               inputs=[x9])
    c.expect_error("graph input rank 9", ["info", j("input_rank9.onnx")],
                   ["input_rank9.onnx", "'input'", "rank 9"])

    # --- external data: length against the data file, a FIFO (would block), escapes ---
    os.makedirs(j("ext"), exist_ok=True)
    with open(j("ext", "w.bin"), "wb") as f:
        f.write(b"\0" * 10)
    if not os.path.exists(j("ext", "fifo")):
        os.mkfifo(j("ext", "fifo"))

    def ext_model(path, loc, dims=(1, 3, 4, 4)):
        t = tensor("w", list(dims))
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "0")):
            e = t.external_data.add()
            e.key, e.value = k, v
        add_model(path, t)
    ext_model(j("ext", "short.onnx"), "w.bin")
    c.expect_error("external data shorter than the tensor", ["info", j("ext", "short.onnx")],
                   ["short.onnx", "'w'", "too short", "10 bytes"])
    ext_model(j("ext", "huge.onnx"), "w.bin", dims=(1 << 20, 1 << 20, 1 << 4))
    c.expect_error("external tensor of 64 TiB (checked before allocating)", ["info", j("ext", "huge.onnx")],
                   ["huge.onnx", "'w'", "too short"])
    ext_model(j("ext", "fifo.onnx"), "fifo")
    c.expect_error("external data is a FIFO", ["info", j("ext", "fifo.onnx")],
                   ["fifo.onnx", "'w'", "not a regular file"])

    # --- shape inference: an output whose size overflows, an input shape that does ---
    rep = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 1 << 20, 1], np.int64), "reps")
    save_model(j("tile.onnx"), [helper.make_node("Tile", ["input", "reps"], ["output"], name="tile")],
               [rep])
    c.expect_error("Tile output over 2^47 bytes", ["run", j("tile.onnx"), j("x.npy"), "-o", out],
                   ["tile", "too large"], out)
    save_model(j("dyn.onnx"), [helper.make_node("Relu", ["input"], ["output"], name="relu")], [],
               x_shape=("N", 3, "H", "W"))
    c.expect_error("input shape over 2^47 bytes", ["info", j("dyn.onnx"), "--input-shape",
                                                    "1000000,3,1000000,1000000"],
                   ["'input'", "too large"])

    # --- video frames: sides and pixel counts read from headers ---
    for name, (w, h), want in (("wide", (40000, 16), "at most 32768 per side"),
                               ("huge", (10000, 10000), "at most 67108864")):
        os.makedirs(j(name), exist_ok=True)
        png_header(j(name, "f000.png"), w, h)
        d = j(name + "_report")
        c.expect_error(f"frames of {w}x{h}", ["explain", good, j(name), "--out-dir", d],
                       ["f000.png", "too large", want])
        if os.path.exists(d):
            c.failed += 1
            print(f"FAIL  frames of {w}x{h}: report folder {d} was written")

    dt = time.time() - t0
    print(f"{c.passed} passed, {c.failed} failed ({dt:.1f} s)")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
