#!/usr/bin/python3
"""Gradient benchmark: stx vs PyTorch autograd on R3D-18, side by side in one run.

    /usr/bin/python3 bench/bench_grad.py [--model r3d_18] [--threads 2] [--repeat 5]

Rows (each in its own child process, best of R after one warm-up):
  - stx forward only                      `stx run --repeat R`
  - stx gradient to MODULE (layer4)       `stx grad --wrt layer4 --repeat R` (forward + backward)
  - stx gradient to the input             `stx grad --wrt input --repeat R`
  - PyTorch backward() to the input       forward + y[0, c].backward() with parameters requiring
                                          gradients, as the Python explanation libraries run it
                                          (weight gradients included), eager mode
  - PyTorch backward() to MODULE          the same with a hook retaining the module output grad
Ratios printed: grad-to-layer4 / stx forward (goal <= 1.3) and stx grad-to-input / PyTorch
backward() (goal <= 0.5)."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from bench_forward import ensure_model, ms, run_child  # noqa: E402

TORCH_CHILD = r'''
import sys, time, numpy as np, torch
sys.path.insert(0, sys.argv[1])
import export_models as em
name, module, threads, repeat, inp = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(threads)
m = em.build_model(name)
x0 = torch.from_numpy(np.load(inp))
acts = {}
def hook(_m, _i, out):
    out.retain_grad(); acts["a"] = out
if module != "input":
    dict(m.named_modules())[module].register_forward_hook(hook)
best = 1e30
for r in range(repeat + 1):
    m.zero_grad(set_to_none=True)
    x = x0.clone().requires_grad_(module == "input")
    t = time.perf_counter()
    y = m(x)
    y[0, int(y[0].argmax())].backward()
    dt = (time.perf_counter() - t) * 1e3
    if r > 0: best = min(best, dt)
print("time_ms_best: %.3f" % best)
'''



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="r3d_18")
    ap.add_argument("--module", default="layer4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--stx", default=os.path.join(ROOT, "build", "stx"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    a = ap.parse_args()
    onnx_path, inp = ensure_model(a.models, a.model)
    env = dict(os.environ, STX_NUM_THREADS=str(a.threads))
    rows = []
    T = str(a.threads)
    R = str(a.repeat + 1)  # stx's best-of includes a cold first run: one more run
    rc, out, err, rss = run_child([a.stx, "run", onnx_path, inp, "--threads", T, "--repeat", R,
                                   "--topk", "0"], env)
    rows.append(("stx forward", ms(out), rss, err if rc else ""))
    for wrt in (a.module, "input"):
        rc, out, err, rss = run_child([a.stx, "grad", onnx_path, inp, "--wrt", wrt, "--threads",
                                       T, "--repeat", R, "-o", "/dev/null"], env)
        rows.append((f"stx grad to {wrt}", ms(out), rss, err if rc else ""))
    for wrt in ("input", a.module):
        rc, out, err, rss = run_child(["/usr/bin/python3", "-c", TORCH_CHILD,
                                       os.path.join(ROOT, "tools"), a.model, wrt, T,
                                       str(a.repeat), inp], env)
        rows.append((f"PyTorch backward() to {wrt}", ms(out), rss, err[-300:] if rc else ""))
    print(f"\n{a.model}, {a.threads} thread(s), best of {a.repeat}, forward + backward")
    print(f"{'':34s}{'best ms':>10s}{'peak RSS':>12s}")
    for name, t, rss, e in rows:
        print(f"{name:34s}{t:10.1f}{rss:9.0f} MiB" + (f"  ERROR {e.strip()}" if e else ""))
    t = {r[0]: r[1] for r in rows}
    print(f"\ngrad to {a.module} / stx forward        = "
          f"{t[f'stx grad to {a.module}'] / t['stx forward']:.2f}  (goal <= 1.3)")
    print(f"stx grad to input / PyTorch backward() = "
          f"{t['stx grad to input'] / t['PyTorch backward() to input']:.2f}  (goal <= 0.5)")


if __name__ == "__main__":
    main()
