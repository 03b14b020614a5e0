#!/usr/bin/python3
"""Perturbation benchmark: stx occlusion vs batched PyTorch, side by side in one run.

    /usr/bin/python3 bench/bench_perturb.py [--model r3d_18] [--threads 2] [--batch 8]
                                            [--rise-masks 64]

Rows (each in its own child process; planning and model loading not timed):
  - stx occlusion       `stx explain --method occlusion --window 4,28,28 --stride 4,28,28
                        --batch 8`: 64 windows (4 x 4 x 4) over a 16x112x112 clip, 8 occluded
                        clips per forward, plus the clean forward. The first layers run only on
                        crops around each window (src/exec/region.c: the clean activations are
                        computed once and reused outside the crops); the rest whole.
  - PyTorch occlusion   the same 64 windows, zero baseline, 8 occluded clips per batch under
                        torch.no_grad() in eager mode (what Captum does with
                        perturbations_per_eval=8), plus the clean forward.
  - stx occlusion bf16  the same with --precision bf16 (convolutions inside fused chains in
                        bfloat16: oneDNN's AMX kernels on this processor).
  - stx RISE            --masks N --batch 8, fp32 and bf16: clips per second.
Ratios printed: stx occlusion / PyTorch occlusion (goal <= 0.33), and bf16's."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_forward import ensure_model, ms, run_child  # noqa: E402

TORCH_CHILD = r'''
import sys, time, numpy as np, torch
sys.path.insert(0, sys.argv[1])
import export_models as em
name, threads, inp, batch = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(threads)
m = em.build_model(name).eval()
x = torch.from_numpy(np.load(inp))
T, H, W = x.shape[2:]
wins = [(t, h, w) for t in range(0, T, 4) for h in range(0, H, 28) for w in range(0, W, 28)]
def occlusion():
    with torch.no_grad():
        y = m(x)
        c = int(y[0].argmax())
        s0 = float(y[0, c])
        acc = torch.zeros(T, H, W, dtype=torch.float64)
        for i in range(0, len(wins), batch):
            xb = x.repeat(min(batch, len(wins) - i), 1, 1, 1, 1)
            for j, (t, h, w) in enumerate(wins[i:i + batch]):
                xb[j, :, t:t + 4, h:h + 28, w:w + 28] = 0
            s = m(xb)[:, c].double()
            for j, (t, h, w) in enumerate(wins[i:i + batch]):
                acc[t:t + 4, h:h + 28, w:w + 28] = s0 - s[j]
        return acc
occlusion()  # warm-up
t = time.perf_counter()
occlusion()
print("time_ms_best: %.3f" % ((time.perf_counter() - t) * 1e3))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="r3d_18")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rise-masks", type=int, default=64)
    ap.add_argument("--stx", default=os.path.join(ROOT, "build", "stx"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    a = ap.parse_args()
    onnx_path, inp = ensure_model(a.models, a.model)
    env = dict(os.environ, STX_NUM_THREADS=str(a.threads))
    T, B = str(a.threads), str(a.batch)
    rows = []
    rc, out, err, rss = run_child([a.stx, "explain", onnx_path, inp, "--method", "occlusion",
                                   "--window", "4,28,28", "--stride", "4,28,28", "--batch", B,
                                   "--threads", T, "--repeat", "2"], env)
    rows.append(("stx occlusion (64 windows)", ms(out), rss, err if rc else ""))
    rc, out, err, rss = run_child([a.stx, "explain", onnx_path, inp, "--method", "occlusion",
                                   "--window", "4,28,28", "--stride", "4,28,28", "--batch", B,
                                   "--threads", T, "--repeat", "2", "--precision", "bf16"], env)
    rows.append(("stx occlusion bf16 (64 windows)", ms(out), rss, err if rc else ""))
    rc, out, err, rss = run_child(["/usr/bin/python3", "-c", TORCH_CHILD,
                                   os.path.join(ROOT, "tools"), a.model, T, inp, B], env)
    rows.append(("PyTorch occlusion (64 windows)", ms(out), rss, err[-300:] if rc else ""))
    rc, out, err, rss = run_child([a.stx, "explain", onnx_path, inp, "--method", "rise",
                                   "--masks", str(a.rise_masks), "--batch", B, "--threads", T],
                                  env)
    rows.append(("stx RISE (%d masks)" % a.rise_masks, ms(out), rss, err if rc else ""))
    rc, out, err, rss = run_child([a.stx, "explain", onnx_path, inp, "--method", "rise",
                                   "--masks", str(a.rise_masks), "--batch", B, "--threads", T,
                                   "--precision", "bf16"], env)
    rows.append(("stx RISE bf16 (%d masks)" % a.rise_masks, ms(out), rss, err if rc else ""))
    print(f"\n{a.model}, {a.threads} thread(s), {a.batch} clips per forward")
    print(f"{'':34s}{'ms':>10s}{'peak RSS':>12s}")
    for name, t, rss, e in rows:
        print(f"{name:34s}{t:10.1f}{rss:9.0f} MiB" + (f"  ERROR {e.strip()}" if e else ""))
    t = [r[1] for r in rows]
    print(f"\nstx occlusion / PyTorch occlusion = {t[0] / t[2]:.2f}  (goal <= 0.33)")
    print(f"stx occlusion bf16 / PyTorch occlusion = {t[1] / t[2]:.2f}")
    print(f"stx RISE: {a.rise_masks / (t[3] / 1e3):.2f} masked clips per second, "
          f"bf16 {a.rise_masks / (t[4] / 1e3):.2f}")


if __name__ == "__main__":
    main()
