#!/usr/bin/python3
"""fuzz_seeds.py: the seed corpora of the fuzz harnesses (tests/fuzz/corpus/TARGET) from the
project's own fixtures: the demo and zoo models (weights moved to external references, so that
seeds stay small), Debian's ONNX backend node-test models, the .npy clips, the demo video.

    /usr/bin/python3 tools/fuzz_seeds.py [--only npy,onnx,metadata,video,list] [--out tests/fuzz/corpus]

tools/fuzz.sh TARGET SECONDS --merge later replaces a corpus by its libFuzzer-minimised merge.
"""
import argparse
import glob
import io
import os
import struct
import subprocess

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_TESTS = "/usr/include/onnx/backend/test/data/node"
# the keys the metadata harness's first byte of a line selects (tests/fuzz/fuzz_metadata.c)
META_KEYS = ["stx.name", "stx.task", "stx.classes", "stx.layout", "stx.mean", "stx.std",
             "stx.clip_length", "stx.frame_size", "stx.target_layer", "stx.token_grid",
             "stx.output"]


def put(out, name, data):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def npy_seeds(out):
    rng = np.random.default_rng(0)
    seeds = []

    def save(a, ver=None):
        b = io.BytesIO()
        if ver is None:
            np.save(b, a)
        else:
            np.lib.format.write_array(b, a, version=ver)
        seeds.append(b.getvalue())
    for dt in ["<f4", "<f8", "<i8", "<i4", "u1", "i1", "?"]:
        save(rng.integers(0, 3, size=(2, 3)).astype(dt))
    save(np.zeros((0, 4), np.float32))
    save(np.float32(3.5))
    save(np.arange(5, dtype=np.float32))
    save(np.zeros((1,) * 8, np.uint8))
    save(np.zeros((1,) * 9, np.uint8))
    save(np.arange(6, dtype=np.float32).reshape(2, 3), ver=(2, 0))
    save(np.arange(6, dtype=np.float32).reshape(2, 3), ver=(3, 0))
    save(np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    save(np.arange(4, dtype=">f4"))
    clip = np.load(os.path.join(ROOT, "models/demo/clip.npy"))
    save(np.ascontiguousarray(clip.reshape(-1)[:64]).reshape(4, 16))
    frames = np.load(os.path.join(ROOT, "models/zoo/clips/blink.npy"))
    save(np.ascontiguousarray(frames[:2, :4, :4]))
    save(np.load(os.path.join(ROOT, "models/demo/expected_output.npy")))
    for i, s in enumerate(seeds):
        put(out, "seed_%03d.npy" % i, s)


def externalise(model, location="weights.bin"):
    """Every initializer's data moved to an external reference at offset 0 of location."""
    for t in model.graph.initializer:
        n = numpy_helper.to_array(t).nbytes
        t.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data"):
            t.ClearField(f)
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", location), ("offset", "0"), ("length", str(n))):
            e = t.external_data.add()
            e.key, e.value = k, v
    return model


def tiny_models():
    """Small hand-made graphs: inline, typed and external weights, Constants, escapes, metadata."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = np.arange(2 * 3 * 1 * 3 * 3, dtype=np.float32).reshape(2, 3, 1, 3, 3) / 50
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="/layer1/conv/Conv", pads=[0, 1, 1] * 2)
    relu = helper.make_node("Relu", ["c"], ["r"], name="/layer1/relu/Relu")
    pool = helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/Pool")
    flat = helper.make_node("Flatten", ["p"], ["y"], name="/fc/Flatten")
    models = []

    def model(inits, nodes=None, meta=None, name="tiny"):
        g = helper.make_graph(nodes or [conv, relu, pool, flat], name, [x], [y], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        for k, v in (meta or {}).items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        return m
    models.append(model([numpy_helper.from_array(w, "w")]))
    typed = helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.reshape(-1).tolist())
    models.append(model([typed], meta={"stx.layout": "NCTHW", "stx.classes": "a,b",
                                       "stx.target_layer": "layer1", "stx.mean": "0.5,0.5,0.5",
                                       "stx.std": "0.2,0.2,0.2", "stx.clip_length": "2",
                                       "stx.frame_size": "4x4", "stx.task": "clip"}))
    for loc in ("weights.bin", "sub/w.bin", "link_in", "link_out", "../outside.bin",
                "/etc/passwd", "pipe", "sub/../weights.bin", "missing.bin"):
        m = model([numpy_helper.from_array(w, "w")])
        models.append(externalise(m, loc))
    cst = helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w))
    models.append(model([], nodes=[cst, conv, relu, pool, flat]))
    shape = helper.make_node("Constant", [], ["s"], value_ints=[1, -1])
    resh = helper.make_node("Reshape", ["p", "s"], ["y"])
    models.append(model([numpy_helper.from_array(w, "w")], nodes=[conv, relu, pool, shape, resh]))
    return [m.SerializeToString() for m in models]


def onnx_seeds(out):
    seeds = tiny_models()
    for path in [os.path.join(ROOT, "models/demo/tiny_r3d.onnx")] + sorted(
            glob.glob(os.path.join(ROOT, "models/zoo/*.onnx"))):
        seeds.append(externalise(onnx.load(path)).SerializeToString())
    node = sorted(glob.glob(os.path.join(NODE_TESTS, "*/model.onnx")))
    for path in node[::8]:  # every 8th of Debian's backend node tests: all op families
        data = open(path, "rb").read()
        if len(data) <= 8192:
            seeds.append(data)
    for i, s in enumerate(seeds):
        put(out, "seed_%03d.onnx" % i, s)


def metadata_seeds(out):
    """A rank byte (0, 1, 2: rank 3, 4, 5), then one line per entry: its key's index in META_KEYS
    (a byte) and the value, or byte 255 and 'key=value'."""
    seeds = []
    for path in sorted(glob.glob(os.path.join(ROOT, "models/zoo/*.onnx"))) + [
            os.path.join(ROOT, "models/demo/tiny_r3d.onnx")]:
        m = onnx.load(path, load_external_data=False)
        lines = []
        for p in m.metadata_props:
            if p.key in META_KEYS:
                lines.append(bytes([META_KEYS.index(p.key)]) + p.value.encode())
            else:
                lines.append(bytes([255]) + p.key.encode() + b"=" + p.value.encode())
        seeds.append(b"\x02" + b"\n".join(lines))  # rank 5 (NCTHW)
    seeds.append(b"\x01\x03NCHW\n\x07" + b"8x8\n\x02a,b,c")  # rank 4
    seeds.append(b"\x00\x03NCT\n\x01frame\n\x0alayer1")  # rank 3
    seeds.append(b"\x02\x04a,b\n\x050,0,0\n\x07HxW\n\x0999")
    for i, s in enumerate(seeds):
        put(out, "seed_%03d.txt" % i, s)


def video_seeds(out, npy2video):
    """Short, small videos of the demo clip in several containers and codecs."""
    frames = np.load(os.path.join(ROOT, "models/zoo/clips/blink.npy"))[:3, :16, :16]
    tmp = os.path.join(out, "..", "..", "video_seed_frames.npy")
    np.save(tmp, np.ascontiguousarray(frames))
    os.makedirs(out, exist_ok=True)
    for i, name in enumerate(["a.mp4", "a.avi", "a.mkv", "a.gif", "a.webm"]):
        dst = os.path.join(out, "seed_%03d_%s" % (i, name))
        r = subprocess.run([npy2video, tmp, dst], capture_output=True)
        if r.returncode != 0:
            if os.path.exists(dst):
                os.remove(dst)
    os.remove(tmp)
    # uncompressed YUV4MPEG2 (written here), an animated GIF (Pillow), Motion-JPEG AVI (OpenCV)
    h, w = frames.shape[1:3]
    y4m = b"YUV4MPEG2 W%d H%d F8:1 Ip A1:1 C420jpeg\n" % (w, h)
    for f in frames:
        yy = (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).astype(np.uint8)
        y4m += b"FRAME\n" + yy.tobytes() + bytes([128]) * (2 * (h // 2) * (w // 2))
    put(out, "seed_010.y4m", y4m)
    from PIL import Image
    ims = [Image.fromarray(f) for f in frames]
    b = io.BytesIO()
    ims[0].save(b, format="GIF", save_all=True, append_images=ims[1:], duration=100, loop=0)
    put(out, "seed_011.gif", b.getvalue())
    try:
        import cv2
        dst = os.path.join(out, "seed_012_mjpeg.avi")
        vw = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"MJPG"), 8, (w, h))
        for f in frames:
            vw.write(np.ascontiguousarray(f[..., ::-1]))
        vw.release()
    except ImportError:
        pass
    put(out, "seed_100.mp4", open(os.path.join(ROOT, "models/zoo/clips/blink.mp4"), "rb").read()[:20000])


def list_seeds(out):
    """Clip lists of `stx evaluate --dataset` (first byte: the list's folder, fuzz_list.c)."""
    lists = [
        b"clip,mask,events,label\nclip0.npy,mask0.npy,events0.npy,7\nclip1.npy,,,\n",
        b"# a comment\n\n/abs/clip.npy , m.npy,e.npy , blink\r\nrel/c2.npy\n",
        b"clip\nc.npy,,,move_left\nc.npy,a,b,c,d\n",
        b"clip,mask,events,label\n",
        b",mask.npy,,\n",
    ]
    for i, text in enumerate(lists):
        put(out, "seed_%d.csv" % i, bytes([i % 3]) + text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="npy,onnx,metadata")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fuzz/corpus"))
    ap.add_argument("--npy2video", default=os.path.join(ROOT, "build/stx_npy2video"))
    a = ap.parse_args()
    only = a.only.split(",")
    if "npy" in only:
        npy_seeds(os.path.join(a.out, "npy"))
    if "onnx" in only:
        onnx_seeds(os.path.join(a.out, "onnx"))
    if "metadata" in only:
        metadata_seeds(os.path.join(a.out, "metadata"))
    if "list" in only:
        list_seeds(os.path.join(a.out, "list"))
    if "video" in only:
        video_seeds(os.path.join(a.out, "video"), a.npy2video)


if __name__ == "__main__":
    main()
