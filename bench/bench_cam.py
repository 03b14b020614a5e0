#!/usr/bin/python3
"""CAM benchmark: stx vs PyTorch doing what pytorch-grad-cam does, side by side in one run.

    /usr/bin/python3 bench/bench_cam.py [--model r3d_18] [--layer layer4] [--threads 2]
                                        [--repeat 5] [--scorecam] [--scorecam-torch]

Rows (each in its own child process; best of R after one warm-up):
  - stx Grad-CAM                 `stx explain --method gradcam --layer L --repeat R`: forward,
                                 backward to the layer only, channel weights, trilinear
                                 upsampling to the clip (planning is not timed: plan once,
                                 explain many)
  - PyTorch Grad-CAM             pytorch-grad-cam's recipe in eager mode: a forward hook keeping
                                 the layer's output and a hook on its gradient, forward,
                                 model.zero_grad(), y[0, c].backward() (parameters require
                                 gradients, so weight gradients are computed too), weights =
                                 gradient mean over (T, H, W), ReLU(sum_k w_k A_k), upsampling to
                                 the clip with F.interpolate(mode='trilinear')
  - with --scorecam: stx Score-CAM (K masked forwards in batches of 16), one run, and with
    --scorecam-torch also torch-cam's recipe (masked forwards in batches of 16 under no_grad).
Ratio printed: stx Grad-CAM / PyTorch Grad-CAM (goal <= 0.25)."""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_forward import ensure_model, ms, run_child  # noqa: E402

TORCH_CHILD = r'''
import sys, time, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
import export_models as em
name, layer, threads, repeat, inp, mode = (sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                           int(sys.argv[5]), sys.argv[6], sys.argv[7])
torch.set_num_threads(threads)
m = em.build_model(name)
x = torch.from_numpy(np.load(inp))
store = {}
def fwd_hook(_m, _i, out):
    store["a"] = out.detach()
    if out.requires_grad:
        out.register_hook(lambda g: store.__setitem__("g", g.detach()))
dict(m.named_modules())[layer].register_forward_hook(fwd_hook)
size = x.shape[2:]
def gradcam():
    y = m(x)
    c = int(y[0].argmax())
    m.zero_grad()
    y[0, c].backward()
    a, g = store["a"], store["g"]
    w = g.mean(dim=(2, 3, 4), keepdim=True)
    cam = torch.relu((w * a).sum(1, keepdim=True))
    return F.interpolate(cam, size=size, mode="trilinear", align_corners=False)
def scorecam(batch=16):
    with torch.no_grad():
        y = m(x)
        c = int(y[0].argmax())
        a = store["a"][0]
        lo = a.flatten(1).min(1).values[:, None, None, None]
        hi = a.flatten(1).max(1).values[:, None, None, None]
        nm = torch.where(hi > lo, (a - lo) / (hi - lo), torch.zeros_like(a))
        up = F.interpolate(nm[:, None], size=size, mode="trilinear", align_corners=False)
        scores = []
        for i in range(0, up.shape[0], batch):
            scores.append(m(x * up[i:i + batch])[:, c])
        w = torch.softmax(torch.cat(scores) - y[0, c], 0)
        cam = torch.relu((w[:, None, None, None] * a).sum(0))
        return cam
fn = gradcam if mode == "gradcam" else scorecam
best = 1e30
for r in range(repeat + 1):
    t = time.perf_counter()
    fn()
    dt = (time.perf_counter() - t) * 1e3
    if r > 0 or repeat == 0: best = min(best, dt)
print("time_ms_best: %.3f" % best)
'''



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="r3d_18")
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scorecam", action="store_true")
    ap.add_argument("--scorecam-torch", action="store_true")
    ap.add_argument("--stx", default=os.path.join(ROOT, "build", "stx"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build", "models"))
    a = ap.parse_args()
    onnx_path, inp = ensure_model(a.models, a.model)
    env = dict(os.environ, STX_NUM_THREADS=str(a.threads))
    T = str(a.threads)
    rows = []

    def stx_row(label, method, repeat, extra=()):
        rc, out, err, rss = run_child([a.stx, "explain", onnx_path, inp, "--method", method,
                                       "--layer", a.layer, "--threads", T, "--repeat",
                                       str(repeat), *extra], env)
        rows.append((label, ms(out), rss, err if rc else ""))

    def torch_row(label, mode, repeat):
        rc, out, err, rss = run_child(["/usr/bin/python3", "-c", TORCH_CHILD,
                                       os.path.join(ROOT, "tools"), a.model, a.layer, T,
                                       str(repeat), inp, mode], env)
        rows.append((label, ms(out), rss, err[-300:] if rc else ""))

    stx_row("stx Grad-CAM", "gradcam", a.repeat + 1)  # best-of includes a cold first run
    torch_row("PyTorch Grad-CAM (pytorch-grad-cam)", "gradcam", a.repeat)
    if a.scorecam:
        stx_row("stx Score-CAM (batch 16)", "scorecam", 1, ("--batch", "16"))
    if a.scorecam_torch:
        torch_row("PyTorch Score-CAM (torch-cam)", "scorecam", 0)
    print(f"\n{a.model} at {a.layer}, {a.threads} thread(s), best of {a.repeat}")
    print(f"{'':38s}{'best ms':>10s}{'peak RSS':>12s}")
    for name, t, rss, e in rows:
        print(f"{name:38s}{t:10.1f}{rss:9.0f} MiB" + (f"  ERROR {e.strip()}" if e else ""))
    t = {r[0]: r[1] for r in rows}
    print(f"\nstx Grad-CAM / PyTorch Grad-CAM = "
          f"{t['stx Grad-CAM'] / t['PyTorch Grad-CAM (pytorch-grad-cam)']:.2f}  (goal <= 0.25)")
    if a.scorecam and a.scorecam_torch:
        print(f"stx Score-CAM / PyTorch Score-CAM = "
              f"{t['stx Score-CAM (batch 16)'] / t['PyTorch Score-CAM (torch-cam)']:.2f}")


if __name__ == "__main__":
    main()
