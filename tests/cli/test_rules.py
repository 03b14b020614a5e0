#!/usr/bin/python3
"""Backward-rule override: guided backpropagation through a user rule on Relu (tests/engine_tests.c
`guided`) equals PyTorch's guided backpropagation (backward hooks clamping every ReLU module's
input gradient at 0) on the bundled demo model."""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_demo import build_demo_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    out = os.path.join(a.work, "guided.npy")
    clip = os.path.join(a.demo, "clip.npy")
    r = subprocess.run([a.tool, "guided", os.path.join(a.demo, "tiny_r3d.onnx"), clip, out],
                       capture_output=True, text=True)
    print(r.stdout.strip())
    m = build_demo_model()
    for mod in m.modules():
        if isinstance(mod, torch.nn.ReLU):
            mod.register_full_backward_hook(lambda _m, gi, _go: (gi[0].clamp(min=0),))
    x = torch.from_numpy(np.load(clip)).requires_grad_(True)
    y = m(x)
    y[0, int(y[0].argmax())].backward()
    want = x.grad.numpy()
    plain = torch.autograd.grad(build_demo_model()(x)[0, int(y[0].argmax())], x)[0].numpy()
    ok = r.returncode == 0
    err = np.abs(np.load(out) - want).max() / np.abs(want).max() if ok else float("inf")
    differs = np.abs(plain - want).max() / np.abs(want).max()
    passed = int(ok and err <= 1e-3) + int(differs > 0.1)
    print(f"{'PASS' if ok and err <= 1e-3 else 'FAIL'}  guided backprop rule vs PyTorch hooks: "
          f"rel err {err:.2e}")
    print(f"{'PASS' if differs > 0.1 else 'FAIL'}  the rule changes the gradient "
          f"(guided vs plain differ by {differs:.2f} of max)")
    print(f"{passed} passed, {2 - passed} failed")
    return 0 if passed == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
