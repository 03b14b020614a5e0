#!/usr/bin/python3
"""Atomic outputs (issue 11): a run killed at any moment (SIGKILL: no cleanup code runs) never
leaves a half-written .npy or report folder under the name asked for. Either the output is
absent, or it is complete and correct.

usage: test_atomic.py --stx build/stx --zoo models/zoo [--work DIR] [--trials N]

1. `stx run` of a model whose output is a 50 MB tensor (Tile of the input: numpy's np.tile is
   the oracle), killed at N moments spread over a measured full run; after each, out.npy is
   absent or equals np.tile(x, reps) exactly (numpy refuses a truncated file).
2. `stx explain MODEL VIDEO --out-dir DIR` on the zoo's 3-D CNN and its demo video, killed the
   same way; DIR is absent or holds the files of a complete report, its manifest parses and its
   saliency.npy has the complete run's shape."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPS = [1, 1, 512, 512]
REPORT_FILES = ["frames.png", "manifest.json", "original.mp4", "overlay.gif", "overlay.mp4",
                "report.html", "saliency.npy", "temporal.png"]


def tile_model(path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    reps = numpy_helper.from_array(np.array(REPS, np.int64), "reps")
    node = helper.make_node("Tile", ["input", "reps"], ["output"], name="tile")
    g = helper.make_graph([node], "g", [x], [y], [reps])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def killed_run(cmd, delay):
    """Starts cmd, SIGKILLs it after delay seconds (if still running); returns its exit code."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
    return p.returncode


def killed_while_writing(cmd, folder, prefix, delay):
    """Starts cmd and SIGKILLs it delay seconds after a file named prefix* other than prefix
    itself (its temporary file) appears in folder; returns True when the kill hit a write."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = False
    while p.poll() is None:
        if any(f.startswith(prefix) and f != prefix for f in os.listdir(folder)):
            seen = True
            time.sleep(delay)
            break
        time.sleep(0.001)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait()
    return seen


def timed(cmd):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"FAIL  complete run: {' '.join(cmd)}: {r.stderr.strip()}")
    return time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stx", required=True)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--work", default=None)
    ap.add_argument("--trials", type=int, default=6)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stx_atomic_")
    os.makedirs(work, exist_ok=True)
    j = lambda *p: os.path.join(work, *p)
    failed = passed = 0
    rng = np.random.default_rng(0)

    # 1. a large .npy output
    tile_model(j("tile.onnx"))
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.save(j("x.npy"), x)
    want = np.tile(x, REPS)
    out = j("out.npy")
    cmd = [a.stx, "run", j("tile.onnx"), j("x.npy"), "-o", out, "--threads", "1"]
    full = timed(cmd)
    if not np.array_equal(np.load(out), want):
        print("FAIL  npy: the complete run's output differs from np.tile")
        return 1
    outcomes = {"absent": 0, "complete": 0}
    hits = 0
    for i in range(a.trials):
        for f in os.listdir(work):
            if f.startswith("out.npy"):
                os.remove(j(f))
        # half the kills at any moment of the run, half while the temporary file is written
        delay = full * (i + 0.5) / a.trials
        if i % 2:
            killed_run(cmd, delay)
        else:
            hits += killed_while_writing(cmd, work, "out.npy", rng.uniform(0, 0.2))
        if not os.path.exists(out):
            outcomes["absent"] += 1
            continue
        try:
            got = np.load(out)
            ok = got.shape == want.shape and np.array_equal(got, want)
        except Exception as e:  # a truncated or corrupt file
            ok, got = False, e
        if ok:
            outcomes["complete"] += 1
        else:
            failed += 1
            print(f"FAIL  npy killed after {delay:.2f} s: out.npy is incomplete ({got})")
    leftovers = [f for f in os.listdir(work) if f.startswith("out.npy") and f != "out.npy"]
    if not failed:
        print(f"PASS  npy: full run {full:.2f} s; {a.trials} kills ({hits} while the temporary "
              f"file was being written): {outcomes['absent']} absent, {outcomes['complete']} "
              f"complete")
    passed += not failed
    for f in leftovers:
        if ".tmp" not in f:
            failed += 1
            print(f"FAIL  npy: a leftover {f} is not named as a temporary file")

    # 2. the video report folder
    model = os.path.join(a.zoo, "action_r3d.onnx")
    video = os.path.join(a.zoo, "clips", "blink.mp4")
    d = j("report")
    cmd = [a.stx, "explain", model, video, "--out-dir", d, "--threads", "1"]
    if os.path.exists(d):
        shutil.rmtree(d)
    full = timed(cmd)
    want_files = sorted(os.listdir(d))
    want_shape = np.load(os.path.join(d, "saliency.npy")).shape
    f2 = 0
    outcomes = {"absent": 0, "complete": 0}
    for i in range(a.trials):
        if os.path.exists(d):
            shutil.rmtree(d)
        delay = full * (0.5 + 1.2 * i / a.trials)  # the folder is renamed at the very end
        killed_run(cmd, delay)
        if not os.path.exists(d):
            outcomes["absent"] += 1
            continue
        problems = [f for f in REPORT_FILES if not os.path.isfile(os.path.join(d, f))]
        if sorted(os.listdir(d)) != want_files:
            problems.append(f"files {sorted(os.listdir(d))} instead of {want_files}")
        try:
            json.load(open(os.path.join(d, "manifest.json")))
            s = np.load(os.path.join(d, "saliency.npy"))
            if s.shape != want_shape:
                problems.append(f"saliency.npy shape {s.shape}")
        except Exception as e:
            problems.append(str(e))
        if problems:
            f2 += 1
            print(f"FAIL  report killed after {delay:.2f} s: incomplete folder: {problems}")
        else:
            outcomes["complete"] += 1
    if not f2:
        passed += 1
        print(f"PASS  report: full run {full:.2f} s; {a.trials} kills: {outcomes['absent']} absent, "
              f"{outcomes['complete']} complete")
    failed += f2
    # what the kills left behind: temporary files and staging folders, never under the real names
    for f in os.listdir(work):
        if f.startswith("report.partial-"):
            shutil.rmtree(j(f), ignore_errors=True)
        elif f.startswith("out.npy.tmp"):
            os.remove(j(f))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
