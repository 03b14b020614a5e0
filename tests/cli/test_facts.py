#!/usr/bin/python3
"""Model facts (stx.* metadata), uint8 frame preprocessing and the CLI flags that override them.

usage: test_facts.py --stx build/stx [--work DIR]

Builds tiny ONNX models with onnx.helper, each carrying metadata_props, and checks `stx info`,
`stx run` and `stx grad` against values computed here independently:
- the clip model passes its input through (output "pixels") and reduces it (mean "scores", sum
  "sums"), so `stx run` on uint8 frames must give numpy's float32 preprocessing bit for bit,
  torch's bilinear interpolate when the frames are resized, and the per-channel means;
- the gradient of scores[n, k] is 1 / (T*H*W) on channel k (sums: 1), so --target NAME and
  --output-name are visible in the written gradient;
- a per-frame model (N,K,T) prints runs of frames with their class names;
- malformed metadata warns in info and fails run/grad with one line unless a flag overrides
  the key; bad uint8 inputs fail with one line and write nothing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

CLASSES = ["left", "right", "up"]
META = {
    "stx.name": "tiny_clip", "stx.task": "clip", "stx.classes": ",".join(CLASSES),
    "stx.layout": "NCTHW", "stx.mean": "0.45,0.4,0.35", "stx.std": "0.225,0.25,0.3",
    "stx.clip_length": "4", "stx.frame_size": "6x5", "stx.target_layer": "scores",
    "stx.token_grid": "2x3x3", "stx.output": "scores", "stx.tools": "a,b",
}
MEAN = np.array([float(v) for v in META["stx.mean"].split(",")], np.float32)
STD = np.array([float(v) for v in META["stx.std"].split(",")], np.float32)


def save(path, nodes, inputs, outputs, meta, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def clip_model(path, meta, rank=5, channels=3):
    """input (N,C,...) -> pixels (Identity), scores (ReduceMean), sums (ReduceSum) over all but
    the first two axes; every dimension but C (channels; None: symbolic too) is symbolic."""
    dims = ["N", channels if channels else "C"] + ["d%d" % i for i in range(rank - 2)]
    axes = list(range(2, rank))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, d)
            for n, d in (("pixels", dims), ("scores", dims[:2]), ("sums", dims[:2]))]
    ax = helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)
    nodes = [helper.make_node("Identity", ["input"], ["pixels"], name="/id/Identity"),
             helper.make_node("ReduceMean", ["input"], ["scores"], name="/head/ReduceMean",
                              axes=axes, keepdims=0),
             helper.make_node("ReduceSum", ["input", "axes"], ["sums"], name="/head/ReduceSum",
                              keepdims=0)]
    save(path, nodes, [x], outs, meta, [ax])


def frame_model(path, meta):
    """input (N,K,T) -> output (Identity): one prediction per frame."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "T"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "T"])
    save(path, [helper.make_node("Identity", ["input"], ["output"], name="/id/Identity")], [x],
         [y], meta)


def numpy_pre(v, mean, std, layout="NCTHW"):
    """numpy's float32 preprocessing: (v / 255 - mean) / std, channels moved for the layout."""
    x = v.astype(np.float32) / np.float32(255)
    if mean is not None:
        x = (x - mean) / std
    if v.ndim == 4:
        x = x[None]
    if layout == "NCTHW":
        return np.ascontiguousarray(np.moveaxis(x, 4, 1))
    x = np.ascontiguousarray(np.moveaxis(x, 4, 2))
    return x if layout == "NTCHW" else x.reshape((-1,) + x.shape[2:])


def torch_resize(v, h, w):
    """torch's bilinear interpolate (half-pixel, no antialias) of v / 255, (N,T,H,W,C) -> same
    with H,W = h,w."""
    n, t, hh, ww, c = v.shape
    x = torch.from_numpy(v.astype(np.float32) / np.float32(255))
    x = x.reshape(n * t, hh, ww, c).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return y.permute(0, 2, 3, 1).reshape(n, t, h, w, c).numpy()


class Checker:
    def __init__(self, stx, work):
        self.stx, self.work = stx, work
        self.passed = self.failed = 0

    def run(self, args):
        return subprocess.run([self.stx] + args, capture_output=True, text=True, timeout=120)

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS  {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}: {detail}")

    def ok_run(self, name, args):
        """Runs a command that must succeed; returns its CompletedProcess or None."""
        r = self.run(args)
        if r.returncode != 0:
            self.check(name, False, f"exit {r.returncode}: {r.stderr.strip()[:300]}")
            return None
        return r

    def expect_error(self, name, args, must_contain, out_file=None):
        if out_file and os.path.exists(out_file):
            os.remove(out_file)
        r = self.run(args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        problems = []
        if r.returncode <= 0:
            problems.append(f"exit code {r.returncode}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines: {r.stderr!r}")
        problems += [f"stderr lacks {s!r}" for s in must_contain if s not in r.stderr]
        if out_file and os.path.exists(out_file):
            problems.append("output file written")
            os.remove(out_file)
        self.check(name, not problems, "; ".join(problems) + f" [{r.stderr.strip()[:200]}]")

    def npy(self, name, args, out, want, exact=True, tol=0.0):
        """Runs `args` (which write `out`) and compares the file with `want`."""
        if os.path.exists(out):
            os.remove(out)
        r = self.ok_run(name, args)
        if r is None:
            return None
        got = np.load(out)
        if got.shape != want.shape:
            self.check(name, False, f"shape {got.shape}, want {want.shape}")
        elif exact:
            bad = int(np.sum(got.view(np.uint32) != want.astype(np.float32).view(np.uint32)))
            self.check(name, bad == 0, f"{bad} of {got.size} values differ bitwise, max |d| "
                       f"{np.max(np.abs(got - want)):.3g}")
        else:
            d = float(np.max(np.abs(got - want)))
            self.check(name, d <= tol, f"max |d| {d:.3g} > {tol}")
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stx_facts_")
    os.makedirs(work, exist_ok=True)
    c = Checker(os.path.abspath(a.stx), work)
    j = lambda *p: os.path.join(work, *p)  # noqa: E731
    out = j("out.npy")
    rng = np.random.default_rng([20240601, 0])

    clip = j("clip.onnx")
    clip_model(clip, META)
    frames = rng.integers(0, 256, (2, 4, 6, 5, 3), dtype=np.uint8)
    np.save(j("frames.npy"), frames)

    # ---- info prints the facts
    r = c.ok_run("info facts", ["info", clip])
    if r:
        want = ["tiny_clip", "clip", "NCTHW", "left, right, up", "0.45,0.4,0.35",
                "0.225,0.25,0.3", "4 frames", "6x5", "2x3x3", "scores (output 1)"]
        missing = [w for w in want if w not in r.stdout]
        c.check("info prints every fact", not missing and not r.stderr.strip(),
                f"missing {missing}; stderr {r.stderr!r}")
    r = c.ok_run("info with flags", ["info", clip, "--classes", "a,b,c", "--layout", "NTCHW",
                                     "--output-name", "sums"])
    if r:
        c.check("info shows the overrides", "a, b, c (--classes)" in r.stdout and
                "NTCHW (--layout)" in r.stdout and "sums (output 2) (--output-name)" in r.stdout,
                r.stdout)

    # ---- run on uint8 frames: numpy's preprocessing bit for bit; means; class names
    c.npy("run uint8 = numpy preprocessing (bitwise)",
          ["run", clip, j("frames.npy"), "--output-name", "pixels", "-o", out], out,
          numpy_pre(frames, MEAN, STD))
    want_scores = numpy_pre(frames, MEAN, STD).astype(np.float64).mean(axis=(2, 3, 4))
    r = c.npy("run uint8 scores = numpy channel means (stx.output)",
              ["run", clip, j("frames.npy"), "-o", out, "--topk", "3"], out, want_scores,
              exact=False, tol=1e-5)
    if r:
        lines = r.stdout.splitlines()
        top = [CLASSES[int(np.argmax(want_scores[n]))] for n in range(2)]
        first = [lines[i + 1] for i, ln in enumerate(lines) if ln.startswith("sample ")]
        c.check("run prints class names next to indices",
                len(first) == 2 and all(t in f and f"(class {CLASSES.index(t)})" in f
                                        for t, f in zip(top, first)), r.stdout)
        c.check("run names the output it prints", "output: scores [2,3]" in r.stdout, r.stdout)

    # the same frames without a batch axis: N = 1
    np.save(j("frames4.npy"), frames[0])
    c.npy("run uint8 (T,H,W,C) = numpy", ["run", clip, j("frames4.npy"), "--output-name",
                                          "pixels", "-o", out], out,
          numpy_pre(frames[0], MEAN, STD))

    # resizing to stx.frame_size: torch's bilinear interpolate on v / 255, then normalised
    big = rng.integers(0, 256, (1, 3, 9, 13, 3), dtype=np.uint8)
    np.save(j("big.npy"), big)
    want = (torch_resize(big, 6, 5) - MEAN) / STD
    c.npy("resize to stx.frame_size = torch interpolate",
          ["run", clip, j("big.npy"), "--output-name", "pixels", "-o", out], out,
          np.ascontiguousarray(np.moveaxis(want, 4, 1)), exact=False, tol=2e-6)
    want = (torch_resize(big, 3, 8) - MEAN) / STD
    c.npy("--frame-size overrides stx.frame_size",
          ["run", clip, j("big.npy"), "--output-name", "pixels", "--frame-size", "3x8", "-o",
           out], out, np.ascontiguousarray(np.moveaxis(want, 4, 1)), exact=False, tol=2e-6)

    # overrides: layout, mean/std, classes
    free = j("free.onnx")  # the same with a symbolic channel axis, so that NTCHW fits
    clip_model(free, META, channels=None)
    c.npy("--layout NTCHW moves the channels after T",
          ["run", free, j("frames.npy"), "--output-name", "pixels", "--layout", "NTCHW", "-o",
           out], out, numpy_pre(frames, MEAN, STD, "NTCHW"))
    m2 = np.array([0.5, 0.25, 0.125], np.float32)
    s2 = np.array([2.0, 0.5, 0.3], np.float32)
    c.npy("--mean/--std override the metadata",
          ["run", clip, j("frames.npy"), "--output-name", "pixels", "--mean", "0.5,0.25,0.125",
           "--std", "2,0.5,0.3", "-o", out], out, numpy_pre(frames, m2, s2))
    c.npy("--mean alone keeps the metadata std",
          ["run", clip, j("frames.npy"), "--output-name", "pixels", "--mean", "0.5,0.25,0.125",
           "-o", out], out, numpy_pre(frames, m2, STD))
    r = c.ok_run("--classes overrides the names",
                 ["run", clip, j("frames.npy"), "--classes", "red,green,blue"])
    if r:
        top = ["red", "green", "blue"][int(np.argmax(want_scores[0]))]
        line = r.stdout.splitlines()[3]
        c.check("--classes names printed", top in line and "left" not in r.stdout, r.stdout)
    with open(j("names.txt"), "w") as f:
        f.write("alpha\r\n\n beta \ngamma\n")
    r = c.ok_run("--classes @FILE", ["run", clip, j("frames.npy"), "--classes",
                                     "@" + j("names.txt")])
    if r:
        top = ["alpha", "beta", "gamma"][int(np.argmax(want_scores[0]))]
        c.check("--classes @FILE names printed", top in r.stdout.splitlines()[3], r.stdout)
    # float input is used as is whatever the flags say
    xf = rng.standard_normal((1, 3, 2, 3, 3)).astype(np.float32)
    np.save(j("xf.npy"), xf)
    c.npy("float32 input used as is", ["run", clip, j("xf.npy"), "--mean", "9,9,9", "--output-name",
                                       "pixels", "-o", out], out, xf)

    # grey frames are replicated to the 3 channels
    grey = rng.integers(0, 256, (1, 2, 6, 5, 1), dtype=np.uint8)
    np.save(j("grey.npy"), grey)
    c.npy("grey frames replicated", ["run", clip, j("grey.npy"), "--output-name", "pixels", "-o",
                                     out], out, numpy_pre(np.repeat(grey, 3, axis=4), MEAN, STD))

    # NCHW: the frames become the batch
    nchw = j("nchw.onnx")
    clip_model(nchw, {"stx.layout": "NCHW", "stx.task": "frame-features", "stx.mean":
                      META["stx.mean"], "stx.std": META["stx.std"]}, rank=4)
    c.npy("NCHW layout: frames as the batch",
          ["run", nchw, j("frames4.npy"), "--output-name", "pixels", "-o", out], out,
          numpy_pre(frames[0], MEAN, STD, "NCHW"))

    # an older export: only stx.layout, so no normalisation (x = v / 255)
    old = j("old.onnx")
    clip_model(old, {"stx.layout": "NCTHW"})
    c.npy("layout-only model: v / 255", ["run", old, j("frames.npy"), "-o", out], out,
          numpy_pre(frames, None, None))
    r = c.ok_run("info layout-only", ["info", old])
    if r:
        c.check("info layout-only: layout, no warning", "NCTHW" in r.stdout and
                "classes" not in r.stdout and not r.stderr.strip(), r.stdout + r.stderr)
    bare = j("bare.onnx")
    clip_model(bare, {})
    r = c.ok_run("info without metadata", ["info", bare])
    if r:
        c.check("info without metadata says so", "none (no stx.* metadata)" in r.stdout, r.stdout)

    # ---- grad: --target NAME, lists, --output-name
    n_pix = 4 * 6 * 5
    for name, args, k, scale in [
            ("grad --target NAME", ["--target", "right"], [1, 1], 1.0 / n_pix),
            ("grad --target NAME,NAME", ["--target", "up,left"], [2, 0], 1.0 / n_pix),
            ("grad --target mixes names and indices", ["--target", "0,up"], [0, 2], 1.0 / n_pix),
            ("grad --output-name sums", ["--target", "up", "--output-name", "sums"], [2, 2], 1.0)]:
        want = np.zeros((2, 3, 4, 6, 5), np.float32)
        for n in range(2):
            want[n, k[n]] = scale
        r = c.npy(name, ["grad", clip, j("frames.npy"), "-o", out] + args, out, want,
                  exact=False, tol=1e-7)
        if r:
            c.check(name + ": names the class", all(
                f"sample {n}: class {k[n]} {CLASSES[k[n]]}" in r.stdout for n in range(2)),
                r.stdout)
    c.expect_error("grad unknown class name", ["grad", clip, j("frames.npy"), "--target", "down",
                                               "-o", out], ["'down'", "left,right,up"], out)
    c.expect_error("grad class name without classes",
                   ["grad", bare, j("frames.npy"), "--target", "left", "-o", out],
                   ["'left'", "--classes"], out)
    c.expect_error("grad unknown --output-name", ["grad", clip, j("frames.npy"), "--output-name",
                                                  "nope", "-o", out], ["nope", "pixels"], out)
    c.expect_error("run unknown --output-name", ["run", clip, j("frames.npy"), "--output-name",
                                                 "nope", "-o", out], ["nope", "scores"], out)

    # ---- per-frame outputs: runs of frames with class names
    phases = ["prep", "cut", "close"]
    fm = j("frames_model.onnx")
    frame_model(fm, {"stx.task": "frame", "stx.classes": ",".join(phases), "stx.layout": "NCT"})
    seq = np.array([0, 0, 0, 0, 2, 2, 2, 2, 1, 1, 0], np.int64)
    y = rng.standard_normal((1, 3, len(seq))).astype(np.float32)
    y[0, seq, np.arange(len(seq))] += 10
    np.save(j("seq.npy"), y)
    r = c.ok_run("per-frame run", ["run", fm, j("seq.npy")])
    if r:
        body = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("  ")]
        want = [["frames", "0-3", "prep"], ["frames", "4-7", "close"], ["frames", "8-9", "cut"],
                ["frame", "10", "prep"]]
        c.check("per-frame runs printed", [b[:3] for b in body] == want, r.stdout)
    fm_bare = j("frames_bare.onnx")
    frame_model(fm_bare, {})
    r = c.ok_run("per-frame from --classes (no metadata)",
                 ["run", fm_bare, j("seq.npy"), "--classes", "x,y,z"])
    if r:
        c.check("per-frame runs from --classes", "frames 4-7" in r.stdout and " z " in r.stdout
                and "top-" not in r.stdout, r.stdout)
    c.expect_error("NCT model refuses frames", ["run", fm, j("frames.npy"), "-o", out],
                   ["frames.npy", "NCT"], out)

    # ---- malformed metadata: a warning in info, one line in run/grad unless overridden
    cases = [
        ("stx.mean", "a,b", ["--mean", "0.5,0.25,0.125"],
         numpy_pre(frames, m2, STD), "3 comma-separated numbers"),
        ("stx.std", "0.2,0,0.2", ["--std", "2,0.5,0.3"], numpy_pre(frames, MEAN, s2), "> 0"),
        ("stx.frame_size", "64", ["--frame-size", "6x5"], numpy_pre(frames, MEAN, STD), "HxW"),
        ("stx.classes", "a,,b", ["--classes", "p,q,r"], numpy_pre(frames, MEAN, STD), "empty"),
        ("stx.classes", "a,b,a", ["--classes", "p,q,r"], numpy_pre(frames, MEAN, STD), "twice"),
        ("stx.layout", "NHWC", ["--layout", "NCTHW"], numpy_pre(frames, MEAN, STD), "NCTHW"),
        ("stx.output", "nope", ["--output-name", "pixels"], numpy_pre(frames, MEAN, STD),
         "graph outputs"),
    ]
    for i, (key, val, fix, want, why) in enumerate(cases):
        bad = j(f"bad{i}.onnx")
        meta = dict(META, **{key: val})
        if key != "stx.output":
            meta.pop("stx.output")
        clip_model(bad, meta)
        base = os.path.basename(bad)
        r = c.ok_run(f"info {key}={val!r} loads", ["info", bad])
        if r:
            warn = [ln for ln in r.stderr.splitlines() if ln.strip()]
            c.check(f"info {key}={val!r} warns", len(warn) == 1 and warn[0].startswith(
                "warning: ") and key in warn[0] and base in warn[0] and why in warn[0], r.stderr)
        c.expect_error(f"run {key}={val!r} fails", ["run", bad, j("frames.npy"), "-o", out],
                       [base, f"'{key}'", f"'{val}'", why, fix[0]], out)
        c.expect_error(f"grad {key}={val!r} fails",
                       ["grad", bad, j("frames.npy"), "-o", out], [base, f"'{key}'"], out)
        pix = [] if key == "stx.output" else ["--output-name", "pixels"]
        c.npy(f"run {key}={val!r} {' '.join(fix)} overrides", ["run", bad, j("frames.npy"), "-o",
                                                                out] + pix + fix, out, want)

    # ---- bad uint8 inputs and bad flag values: one line, no output
    np.save(j("rank3.npy"), np.zeros((4, 6, 5), np.uint8))
    c.expect_error("uint8 rank 3", ["run", clip, j("rank3.npy"), "-o", out],
                   ["rank3.npy", "rank 3"], out)
    np.save(j("two.npy"), np.zeros((1, 4, 6, 5, 2), np.uint8))
    c.expect_error("uint8 with 2 channels", ["run", clip, j("two.npy"), "-o", out],
                   ["two.npy", "got 2"], out)
    np.save(j("empty.npy"), np.zeros((1, 0, 6, 5, 3), np.uint8))
    c.expect_error("uint8 with no frames", ["run", clip, j("empty.npy"), "-o", out],
                   ["empty.npy", "> 0"], out)
    np.save(j("i32.npy"), np.zeros((1, 3, 4, 6, 5), np.int32))
    c.expect_error("int32 input", ["run", clip, j("i32.npy"), "-o", out], ["i32.npy", "uint8"],
                   out)
    for flag, val, needle in [("--mean", "1,2", "--mean"), ("--std", "1,0,1", "> 0"),
                              ("--std", "x,y,z", "--std"), ("--layout", "NHWC", "--layout"),
                              ("--frame-size", "64", "--frame-size"),
                              ("--frame-size", "0x4", "--frame-size"),
                              ("--classes", "a,,b", "empty"), ("--classes", "a,b,a", "twice"),
                              ("--classes", "@" + j("no_such_file.txt"), "no_such_file.txt")]:
        c.expect_error(f"bad {flag} {val}", ["run", clip, j("frames.npy"), flag, val, "-o", out],
                       [needle], out)
    c.expect_error("flag without a value", ["info", clip, "--mean"], ["--mean"])

    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
