#!/usr/bin/python3
"""Input gradients and gradients at an intermediate module, stx vs PyTorch autograd.

For each model of tools/export_models.py: the score is the top class's logit (or, for the
per-frame TCN, class c at frame t; one case uses the softmax probability); PyTorch computes
d score / d input and d score / d (module output) with a forward hook; `stx grad` computes the
same through the exported ONNX model. Pass: max |stx - torch| <= 1e-3 * max |torch|.

usage: test_grads.py --stx build/stx --models DIR [--only NAME,...]"""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import export_models as em  # noqa: E402

# model -> (module path whose output gradient is checked, frame for per-frame outputs or None)
CASES = {
    "r3d_18": ("layer4", None),
    "mc3_18": ("layer4", None),
    "r2plus1d_18": ("layer4", None),
    "s3d": ("features.12", None),
    "vivit_tiny": ("blocks.0", None),
    "cnn_lstm": ("cnn", None),
    "tcn": ("stage1", 42),
}


def torch_grads(name, module, x, target=None, frame=None, prob=False):
    m = em.build_model(name)
    acts = {}
    mod = dict(m.named_modules())[module]

    def hook(_m, _i, out):
        out.retain_grad()
        acts["a"] = out

    h = mod.register_forward_hook(hook)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = m(xt)
    h.remove()
    scores = y if frame is None else y[:, :, frame]
    if prob:
        scores = torch.softmax(scores, dim=1)
    c = int(torch.argmax(scores[0])) if target is None else target
    scores[:, c].sum().backward()
    return c, xt.grad.numpy(), acts["a"].grad.numpy()


def stx_grad(stx, model, inp, wrt, out, target, frame=None, prob=False):
    cmd = [stx, "grad", model, inp, "--target", str(target), "--wrt", wrt, "-o", out]
    if frame is not None:
        cmd += ["--frame", str(frame)]
    if prob:
        cmd += ["--score", "prob"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return np.load(out), r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    only = [x for x in a.only.split(",") if x]
    missing = [n for n in CASES if not em.complete(n, a.models)]
    if missing:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_models.py"),
                        "--out", a.models, "--only", ",".join(missing)], check=True,
                       capture_output=True)
    torch.set_num_threads(2)
    passed = failed = 0
    work = os.path.join(a.models, "grads")
    os.makedirs(work, exist_ok=True)

    def check(label, got, want, info=""):
        nonlocal passed, failed
        if got is None:
            print(f"FAIL  {label}: stx failed: {info}")
            failed += 1
            return
        if got.shape != want.shape:
            print(f"FAIL  {label}: shape {got.shape}, torch {want.shape}")
            failed += 1
            return
        err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
        ok = err <= 1e-3
        print(f"{'PASS' if ok else 'FAIL'}  {label}: rel err {err:.2e} (max|torch| {np.abs(want).max():.3g})")
        passed += ok
        failed += not ok

    for name, (module, frame) in CASES.items():
        if only and name not in only:
            continue
        onnx_path = os.path.join(a.models, name + ".onnx")
        inp = os.path.join(a.models, name + ".input.npy")
        x = np.load(inp)
        cases = [(False, None)]
        if name == "r3d_18":
            cases.append((True, None))  # softmax probability score
        for prob, target in cases:
            c, gx, ga = torch_grads(name, module, x, target, frame, prob)
            tag = f"{name}{'[prob]' if prob else ''}"
            got, info = stx_grad(a.stx, onnx_path, inp, "input", os.path.join(work, "gx.npy"), c,
                                 frame, prob)
            check(f"{tag} d/d input", got, gx, info)
            if not prob:
                got, info = stx_grad(a.stx, onnx_path, inp, module, os.path.join(work, "ga.npy"),
                                     c, frame, prob)
                check(f"{tag} d/d {module}", got, ga, info)
    # a batch where each sample has its own target
    if not only or "r3d_18" in only:
        xb = em.make_input("r3d_18", batch=2)
        bpath = os.path.join(work, "r3d_b2.npy")
        np.save(bpath, xb)
        m = em.build_model("r3d_18")
        xt = torch.from_numpy(xb).requires_grad_(True)
        y = m(xt)
        targets = [3, 117]
        (y[0, targets[0]] + y[1, targets[1]]).backward()
        got, info = stx_grad(a.stx, os.path.join(a.models, "r3d_18.onnx"), bpath, "input",
                             os.path.join(work, "gb.npy"), ",".join(map(str, targets)))
        check("r3d_18 batch of 2, targets 3 and 117", got, xt.grad.numpy(), info)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
