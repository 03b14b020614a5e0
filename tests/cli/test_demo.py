#!/usr/bin/python3
"""`stx run` on the bundled demo model matches PyTorch's stored output (tools/make_demo.py),
for N=1 and for a batch of 3 re-planned from the N=1 export; `stx info` lists the modules."""
import argparse
import os
import subprocess
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.demo, "tiny_r3d.onnx")
    clip = os.path.join(a.demo, "clip.npy")
    want = np.load(os.path.join(a.demo, "expected_output.npy"))
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(("PASS  " if ok else "FAIL  ") + name + (f": {detail}" if detail else ""))
        passed += ok
        failed += not ok

    out = os.path.join(a.work, "out.npy")
    r = subprocess.run([a.stx, "run", model, clip, "-o", out, "--topk", "5"],
                       capture_output=True, text=True)
    ok = r.returncode == 0 and os.path.exists(out)
    err = np.abs(np.load(out) - want).max() / np.abs(want).max() if ok else float("inf")
    check("demo N=1 matches PyTorch", ok and err <= 1e-4, f"rel err {err:.2e}")
    top = int(np.argmax(want[0]))
    check("top-1 printed", ok and f"class {top}" in r.stdout.splitlines()[2], r.stdout.strip()[:200])

    # batch of 3: the same clip, scaled; each row must equal the N=1 run of its own clip
    x = np.load(clip)
    xb = np.concatenate([x, 0.5 * x, -x], axis=0).astype(np.float32)
    np.save(os.path.join(a.work, "b3.npy"), xb)
    r = subprocess.run([a.stx, "run", model, os.path.join(a.work, "b3.npy"), "-o", out],
                       capture_output=True, text=True)
    rows = []
    for i in range(3):
        np.save(os.path.join(a.work, f"one{i}.npy"), xb[i:i + 1])
        o1 = os.path.join(a.work, f"o{i}.npy")
        subprocess.run([a.stx, "run", model, os.path.join(a.work, f"one{i}.npy"), "-o", o1],
                       capture_output=True, check=True)
        rows.append(np.load(o1))
    ok = r.returncode == 0
    yb = np.load(out) if ok else None
    err = max(np.abs(yb[i] - rows[i][0]).max() for i in range(3)) if ok else float("inf")
    check("batch of 3 equals three single runs", ok and yb.shape == (3, 10) and err <= 1e-5,
          f"max abs diff {err:.2e}")
    check("row 0 of the batch matches PyTorch", ok and np.abs(yb[0] - want[0]).max() <= 1e-4 * np.abs(want).max())

    # a model exported with a fixed batch of 1 (Reshape targets [1, -1] and [1*T, ...] are baked
    # in as constants) re-planned for a batch of 3
    import torch
    import torch.nn as nn

    class Static(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 8, 5)

        def forward(self, x):  # x: N,3,8,32,32
            h = torch.relu(self.conv(x)).mean(dim=(3, 4))      # N,8,8
            frames = h.permute(0, 2, 1).reshape(x.shape[0] * 8, 8)  # N*T, C: frame-batched
            return self.fc(frames.reshape(x.shape[0], -1))

    torch.manual_seed(3)
    sm = Static().eval()
    spath = os.path.join(a.work, "static.onnx")
    torch.onnx.export(sm, torch.from_numpy(x), spath, opset_version=17,
                      input_names=["input"], output_names=["output"])
    sb = os.path.join(a.work, "sb3.npy")
    np.save(sb, xb)
    r = subprocess.run([a.stx, "run", spath, sb, "-o", out], capture_output=True, text=True)
    with torch.no_grad():
        want3 = sm(torch.from_numpy(xb)).numpy()
    ok = r.returncode == 0
    err = np.abs(np.load(out) - want3).max() / np.abs(want3).max() if ok else float("inf")
    check("static batch-1 export re-planned for batch 3", ok and err <= 1e-4,
          f"rel err {err:.2e} {r.stderr.strip()}")

    r = subprocess.run([a.stx, "info", model], capture_output=True, text=True)
    check("info lists layer3 with its shape", r.returncode == 0 and
          any(l.split()[:1] == ["layer3"] and "[1,64,2,4,4]" in l for l in r.stdout.splitlines()),
          "")
    import onnx
    from onnx import numpy_helper
    nparam = sum(numpy_helper.to_array(t).size for t in onnx.load(model).graph.initializer
                 if t.data_type == onnx.TensorProto.FLOAT)
    check("info counts parameters (float initializers, counted with onnx)",
          f"parameters: {nparam}" in r.stdout, f"{nparam}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
