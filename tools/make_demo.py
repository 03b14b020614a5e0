#!/usr/bin/python3
"""Makes the bundled demo model and clip (models/demo/): a small R3D-style 3D CNN with seeded
random weights, exported to ONNX opset 17, and a seeded input clip (1x3x8x32x32, N,C,T,H,W).

It stands in until the trained model zoo exists; it shows the forward path end to end.
usage: /usr/bin/python3 tools/make_demo.py [--out models/demo]"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm3d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class TinyR3D(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 16, (3, 5, 5), (1, 2, 2), (1, 2, 2), bias=False),
                                  nn.BatchNorm3d(16), nn.ReLU())
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.layer3 = Block(32, 64, 2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_demo_model():
    """The demo model with its seeded weights and BatchNorm statistics (eval mode)."""
    torch.manual_seed(7)
    m = TinyR3D().eval()
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, nn.BatchNorm3d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "demo"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    m = build_demo_model()
    x = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(11))
    path = os.path.join(a.out, "tiny_r3d.onnx")
    torch.onnx.export(m, x, path, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    import onnx
    mp = onnx.load(path)
    for k, v in {"stx.layout": "NCTHW", "stx.note": "random weights: a forward-path demo"}.items():
        e = mp.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(mp, path)
    np.save(os.path.join(a.out, "clip.npy"), x.numpy())
    with torch.no_grad():
        np.save(os.path.join(a.out, "expected_output.npy"), m(x).numpy())
    print("wrote", a.out)


if __name__ == "__main__":
    main()
