#!/usr/bin/python3
"""Writes the per-op gradient test cases (single-op ONNX models in float64, and their inputs)
that tests/grad_tests.c checks against central finite differences.

usage: /usr/bin/python3 tools/make_grad_cases.py --out DIR [--only FAMILY,...]

Each module in tools/grad_cases/ defines cases() -> list of Case. A case is a small ONNX graph
whose graph inputs are the float64 tensors to differentiate (constants such as weights, shapes
and indices are initializers) and its input values, chosen away from non-differentiable points
(ReLU at 0, ties in max, clip bounds, ...). Deterministic: every case seeds its own RNG."""
import argparse
import importlib
import os
import pkgutil
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grad_cases  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    only = [x for x in a.only.split(",") if x]
    names = set()
    n = 0
    for mod in sorted(m.name for m in pkgutil.iter_modules(grad_cases.__path__)):
        if mod.startswith("_") or (only and mod not in only):
            continue
        for c in importlib.import_module("grad_cases." + mod).cases():
            if c.name in names:
                raise SystemExit(f"duplicate case name {c.name}")
            names.add(c.name)
            onnx.save(c.model, os.path.join(a.out, c.name + ".onnx"))
            for k, x in enumerate(c.inputs):
                np.save(os.path.join(a.out, f"{c.name}.in{k}.npy"), np.asarray(x, np.float64))
            n += 1
    print(f"wrote {n} cases to {a.out}")


if __name__ == "__main__":
    main()
