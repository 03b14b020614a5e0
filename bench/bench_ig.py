#!/usr/bin/python3
"""Integrated Gradients benchmark: stx vs Captum-style batched PyTorch IG, side by side in one run.

    /usr/bin/python3 bench/bench_ig.py [--model r3d_18] [--steps 32] [--batch 8] [--threads 2]
                                       [--repeat 3]

Rows (each in its own child process; best of R after one warm-up):
  - stx ig      `stx explain MODEL INPUT --method ig --steps K --batch B --repeat R
                --precision fp32|bf16` (the midpoint rule; the completeness check's two extra
                fp32 forwards included). bf16: the convolutions between fused ones run forward
                and backward-data in bfloat16 (AMX where the CPU has it).
  - PyTorch IG  what Captum's IntegratedGradients(model).attribute(x, target=c, n_steps=K,
                method='riemann_middle', internal_batch_size=B) does, written out: the K scaled
                inputs in batches of B, forward, torch.autograd.grad of the summed target
                scores, the gradients weighted and summed, times (x - baseline); eval mode,
                parameters not requiring gradients (Captum leaves them as they are; they are
                frozen here, which only helps PyTorch). Also with the forward under
                torch.autocast('cpu', dtype=torch.bfloat16), PyTorch's own bfloat16 path.
The ratios are printed (goal <= 0.5 on R3D-18, 16x112x112, 32 steps, against Captum-style IG,
which runs in fp32), with the completeness gaps and how far the bf16 map is from the fp32 one.
All use the same number of threads; run on an otherwise idle machine."""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from bench_forward import ensure_model, ms, run_child  # noqa: E402

TORCH_CHILD = r'''
import sys, time, numpy as np, torch
sys.path.insert(0, sys.argv[1])
import export_models as em
name, threads, repeat, inp, steps, batch = (sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                            sys.argv[5], int(sys.argv[6]), int(sys.argv[7]))
bf16 = sys.argv[8] == 'bf16'
torch.set_num_threads(threads)
m = em.build_model(name).eval()
for p in m.parameters():
    p.requires_grad_(False)
x = torch.from_numpy(np.load(inp))
with torch.no_grad():
    c = int(m(x)[0].argmax())
alphas = [(k + 0.5) / steps for k in range(steps)]
best = 1e30
for r in range(repeat + 1):
    t = time.perf_counter()
    base = torch.zeros_like(x)
    total = torch.zeros_like(x)
    for i in range(0, steps, batch):
        a = torch.tensor(alphas[i:i + batch]).view(-1, 1, 1, 1, 1)
        xs = (base + a * (x - base)).requires_grad_(True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            y = m(xs)
        g, = torch.autograd.grad(y[:, c].float().sum(), xs)
        total += g.sum(0, keepdim=True) / steps
    attr = total * (x - base)
    dt = (time.perf_counter() - t) * 1e3
    if r > 0: best = min(best, dt)
print("time_ms_best: %.3f" % best)
'''



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="r3d_18")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stx", default=os.path.join(ROOT, "build", "stx"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    a = ap.parse_args()
    onnx_path, inp = ensure_model(a.models, a.model)
    env = dict(os.environ, STX_NUM_THREADS=str(a.threads))
    T, K, B = str(a.threads), str(a.steps), str(a.batch)
    R = str(a.repeat + 1)  # stx's best-of includes a cold first run: one more run
    rows, gaps = [], []
    for prec in ("fp32", "bf16"):
        rc, out, err, rss = run_child([a.stx, "explain", onnx_path, inp, "--method", "ig",
                                       "--steps", K, "--batch", B, "--threads", T, "--repeat", R,
                                       "--precision", prec, "-o",
                                       os.path.join(a.models, "bench_ig_%s.npy" % prec)], env)
        gap = re.search(r"gap [^ ]+ \(([0-9.e+-]+)%\)", out)
        gaps.append((prec, gap.group(1) if gap else "?"))
        rows.append(("stx ig " + prec, ms(out), rss, err if rc else ""))
    for prec in ("fp32", "bf16"):
        rc, out, err, rss = run_child(["/usr/bin/python3", "-c", TORCH_CHILD,
                                       os.path.join(ROOT, "tools"), a.model, T, str(a.repeat),
                                       inp, K, B, prec], env)
        label = "PyTorch IG " + ("(Captum-style)" if prec == "fp32" else "bf16 autocast")
        rows.append((label, ms(out), rss, err[-300:] if rc else ""))
    print(f"\n{a.model}, IG {a.steps} steps in batches of {a.batch}, {a.threads} thread(s), "
          f"best of {a.repeat}")
    print(f"{'':30s}{'best ms':>10s}{'peak RSS':>12s}")
    for name, t, rss, e in rows:
        print(f"{name:30s}{t:10.1f}{rss:9.0f} MiB" + (f"  ERROR {e.strip()}" if e else ""))
    for prec, g in gaps:
        print(f"stx {prec} completeness gap: {g} % of |f(x) - f(0)|")
    try:
        import numpy as np
        f, b = (np.load(os.path.join(a.models, "bench_ig_%s.npy" % p)).ravel().astype(float)
                for p in ("fp32", "bf16"))
        print(f"stx bf16 map against fp32: Pearson {np.corrcoef(f, b)[0, 1]:.4f}, relative L2 "
              f"{np.linalg.norm(f - b) / np.linalg.norm(f):.3f}")
    except (OSError, ValueError):
        pass
    t = [r[1] for r in rows]
    print(f"\nstx fp32 / PyTorch (Captum-style, fp32)  = {t[0] / t[2]:.2f}")
    print(f"stx bf16 / PyTorch (Captum-style, fp32)  = {t[1] / t[2]:.2f}  (goal <= 0.5)")
    print(f"stx bf16 / PyTorch bf16 autocast         = {t[1] / t[3]:.2f}")


if __name__ == "__main__":
    main()
