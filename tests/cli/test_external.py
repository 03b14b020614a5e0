#!/usr/bin/python3
"""External-data ONNX models: weights in a file beside the model load and give the same output;
locations that leave the model's folder, missing or short data files are refused clearly."""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(os.path.join(a.work, "m"))
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(("PASS  " if ok else "FAIL  ") + name + (f": {detail}" if detail else ""))
        passed += ok
        failed += not ok

    clip = os.path.join(a.demo, "clip.npy")
    want = np.load(os.path.join(a.demo, "expected_output.npy"))
    m = onnx.load(os.path.join(a.demo, "tiny_r3d.onnx"))
    path = os.path.join(a.work, "m", "ext.onnx")
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=64)
    out = os.path.join(a.work, "out.npy")
    r = subprocess.run([a.stx, "run", path, clip, "-o", out], capture_output=True, text=True)
    ok = r.returncode == 0
    err = np.abs(np.load(out) - want).max() / np.abs(want).max() if ok else float("inf")
    check("external data model matches PyTorch", ok and err <= 1e-4, f"rel err {err:.2e} {r.stderr.strip()}")

    def bad(name, loc, want_text, make_file=None):
        mm = onnx.load(path, load_external_data=False)
        for t in mm.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = loc
        p = os.path.join(a.work, "m", name + ".onnx")
        onnx.save(mm, p)
        if make_file:
            make_file()
        r = subprocess.run([a.stx, "info", p], capture_output=True, text=True)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        check(name, r.returncode > 0 and len(lines) == 1 and want_text in r.stderr,
              r.stderr.strip())

    with open(os.path.join(a.work, "outside.weights"), "wb") as f:
        f.write(open(os.path.join(a.work, "m", "ext.weights"), "rb").read())
    bad("escape with ..", "../outside.weights", "leaves the model's folder")
    bad("absolute location", os.path.join(a.work, "outside.weights"), "leaves the model's folder")
    os.symlink(os.path.join(a.work, "outside.weights"), os.path.join(a.work, "m", "link.weights"))
    bad("symlink escape", "link.weights", "outside the model's folder")
    bad("missing data file", "nope.weights", "nope.weights")
    with open(os.path.join(a.work, "m", "short.weights"), "wb") as f:
        f.write(b"\0" * 100)
    bad("short data file", "short.weights", "too short")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
