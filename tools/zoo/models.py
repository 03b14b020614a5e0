"""The stx model zoo's architectures (PyTorch), small enough to train on two CPU cores.

Action models take a clip of 16 RGB frames of 64x64 and return 8 class logits:
    action_r3d          3-D ResNet (R3D-style, one BasicBlock per stage)      input N,3,T,H,W
    action_r2plus1d     R(2+1)D-style: every 3x3x3 conv split into 1x3x3 + 3x1x1 input N,3,T,H,W
    action_cnn_lstm     per-frame 2-D CNN + LSTM, logits from the last step    input N,T,3,H,W
    action_cnn_lstm_attn the same CNN + LSTM with temporal attention pooling  input N,T,3,H,W
    action_timesformer  frame CNN features -> tubelet embedding -> divided space-time attention
                        (a hybrid TimeSformer)                                input N,3,T,H,W
Procedure (surgical phase) models work on 48x48 frames and 7 phases:
    phase_cnn           per-frame 2-D CNN (as TeCNO trains it: phase and tool heads); outputs
                        'features' (N,64), 'logits' (N,7) and 'tools' (N,7) for input N,3,H,W
    phase_mstcn         causal multi-stage TCN over phase_cnn's features: N,64,T -> N,7,T
    phase_cnn_lstm      per-frame CNN + causal LSTM: N,T,3,H,W -> N,T,7 per-frame logits

Convolutions are followed by BatchNorm through ConvBN, which `fold_batchnorm` folds into the
convolution after training (in float64, then rounded once), so that the exported ONNX graph and
the PyTorch model used for the goldens hold exactly the same float32 weights.

Module names matter: they become ONNX node-name scopes, which is how stx addresses layers
(`layer4`, `blocks.2.space_attn`, `cnn.conv4`).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBN(nn.Module):
    """Conv (2-D, 3-D or 1-D) + BatchNorm + optional ReLU; fold() merges the BN into the conv."""

    def __init__(self, conv, relu=True):
        super().__init__()
        self.conv = conv
        dims = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
        self.bn = dims[type(conv)](conv.out_channels)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x

    @torch.no_grad()
    def fold(self):
        if isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = conv.weight.double() * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        b = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        b = (b - bn.running_mean.double()) * scale + bn.bias.double()
        folded = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                            conv.padding, conv.dilation, conv.groups, bias=True)
        folded.weight.copy_(w.float())
        folded.bias.copy_(b.float())
        self.conv = folded
        self.bn = nn.Identity()


def fold_batchnorm(model):
    """Fold every ConvBN of an eval-mode model in place; returns the model."""
    model.eval()
    for m in model.modules():
        if isinstance(m, ConvBN):
            m.fold()
    return model


def conv3(cin, cout, k, s=1, p=0, relu=True):
    return ConvBN(nn.Conv3d(cin, cout, k, s, p, bias=False), relu)


# ----------------------------------------------------------------------------------------------
# 3-D CNNs
# ----------------------------------------------------------------------------------------------

class Block3d(nn.Module):
    """R3D BasicBlock: two 3x3x3 convs and an identity (or 1x1x1 projection) shortcut.
    Subclasses change the two convolutions (make_convs)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.conv2 = self.make_convs(cin, cout, stride)
        self.downsample = None
        if tuple(stride) != (1, 1, 1) or cin != cout:
            self.downsample = conv3(cin, cout, 1, stride, 0, relu=False)

    @staticmethod
    def make_convs(cin, cout, stride):
        return conv3(cin, cout, 3, stride, 1), conv3(cout, cout, 3, 1, 1, relu=False)

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class Conv2Plus1d(nn.Module):
    """A kxkxk convolution factorised into a spatial 1xkxk and a temporal kx1x1 convolution with
    `mid` channels in between (R(2+1)D); BN + ReLU after the spatial part. stride is (t, h, w)."""

    def __init__(self, cin, cout, mid, stride, relu=True, k=3):
        super().__init__()
        st, sh, sw = stride
        self.spatial = conv3(cin, mid, (1, k, k), (1, sh, sw), (0, k // 2, k // 2))
        self.temporal = conv3(mid, cout, (3, 1, 1), (st, 1, 1), (1, 0, 0), relu=relu)

    def forward(self, x):
        return self.temporal(self.spatial(x))


class Block2Plus1d(Block3d):
    """The R(2+1)D block: Block3d with both convolutions factorised."""

    @staticmethod
    def make_convs(cin, cout, stride):
        return (Conv2Plus1d(cin, cout, (cin + cout) // 2, stride),
                Conv2Plus1d(cout, cout, cout, (1, 1, 1), relu=False))


class VideoResNet(nn.Module):
    """stem (3x5x5 or (2+1)D, spatial stride 2, 8 channels: the full-resolution layers cost the
    most) -> layer1..layer4 (one block each) -> global average pool -> fc. For a 16x64x64 clip the feature maps are (T x H x W): stem 16x32x32,
    layer1 16x16x16, layer2 8x8x8, layer3 4x8x8, layer4 4x8x8."""

    STRIDES = ((1, 2, 2), (2, 2, 2), (2, 1, 1), (1, 1, 1))

    def __init__(self, block, num_classes=8, widths=(16, 32, 48, 64), stem_width=8,
                 factorised_stem=False):
        super().__init__()
        if factorised_stem:
            self.stem = Conv2Plus1d(3, stem_width, 12, (1, 2, 2), k=5)
        else:
            self.stem = conv3(3, stem_width, (3, 5, 5), (1, 2, 2), (1, 2, 2))
        cin = stem_width
        for i, (w, s) in enumerate(zip(widths, self.STRIDES)):
            setattr(self, 'layer%d' % (i + 1), block(cin, w, s))
            cin = w
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3, 4)))


def action_r3d(num_classes=8):
    return VideoResNet(Block3d, num_classes)


def action_r2plus1d(num_classes=8):
    return VideoResNet(Block2Plus1d, num_classes, factorised_stem=True)


# ----------------------------------------------------------------------------------------------
# Per-frame CNN + LSTM
# ----------------------------------------------------------------------------------------------

class FrameCNN(nn.Module):
    """2-D CNN on single frames: four 3x3 conv stages (stride 2 in the first three). 64x64 ->
    conv4 at 8x8; 48x48 -> 6x6. Features: global average pooling -> `dim` (position-free, enough
    for which tools are present), or with target_map=True a map of where the target is: a 1x1
    conv down to 16 channels (`reduce`), a 1x1 conv to one channel (`target`: per cell, the
    logit of the fraction of the cell the target covers), its sigmoid flattened to 64 values per
    frame. A model that must see motion from per-frame features needs positions (a globally
    pooled disc moving left looks the same as one moving right), and the map is what the LSTM
    reads."""

    def __init__(self, dim=64, widths=(16, 32, 64), target_map=False):
        super().__init__()
        c1, c2, c3 = widths
        self.conv1 = ConvBN(nn.Conv2d(3, c1, 3, 2, 1, bias=False))
        self.conv2 = ConvBN(nn.Conv2d(c1, c2, 3, 2, 1, bias=False))
        self.conv3 = ConvBN(nn.Conv2d(c2, c3, 3, 2, 1, bias=False))
        self.conv4 = ConvBN(nn.Conv2d(c3, dim, 3, 1, 1, bias=False))
        self.target_map = target_map
        if target_map:
            self.reduce = ConvBN(nn.Conv2d(dim, 16, 1, bias=False))
            self.target = nn.Conv2d(16, 1, 1)

    def target_logits(self, x):
        """Per-cell target coverage logits (N, 1, h, w) (target_map models)."""
        return self.target(self.reduce(self.conv4(self.conv3(self.conv2(self.conv1(x))))))

    def forward(self, x, reduced=False):
        """Features of frames x: the target map (target_map models), the flattened `reduce`
        map (reduced=True), or the globally pooled conv4 map."""
        if self.target_map and reduced:
            return self.reduce(self.conv4(self.conv3(self.conv2(self.conv1(x))))).flatten(1)
        if self.target_map:
            return torch.sigmoid(self.target_logits(x)).flatten(1)
        return self.conv4(self.conv3(self.conv2(self.conv1(x)))).mean(dim=(2, 3))


class CellLSTM(nn.Module):
    """The temporal model of the zoo's CNN+LSTMs, run at every cell of the per-frame target map
    (a ConvLSTM whose recurrence is 1x1 after one 3x3 convolution): input N,T,1,h,w (the frame
    CNN's sigmoid map), a 3x3 convolution to `mid` channels and ReLU on each frame (what is at
    and next to the cell), one LSTM (`hidden`) over the frames at each of the h*w cells (ONNX
    LSTM with batch N*h*w), and the hidden states gated by the map itself: output N,hidden,T,h,w
    = h(t, cell) * map(t, cell). The gate puts each frame's evidence where the target is in that
    frame (an LSTM's memory lags: ungated, the hidden state of a cell the disc has left still
    holds it)."""

    def __init__(self, mid=16, hidden=32):
        super().__init__()
        self.local = nn.Conv2d(1, mid, 3, padding=1)
        self.lstm = nn.LSTM(mid, hidden, batch_first=True)

    def forward(self, m):                                   # m: N,T,1,h,w
        n, t, _, h, w = m.shape
        x = F.relu(self.local(m.reshape(n * t, 1, h, w)))
        x = x.reshape(n, t, -1, h * w).permute(0, 3, 1, 2).reshape(n * h * w, t, -1)
        y, _ = self.lstm(x)
        y = y.reshape(n, h, w, t, -1).permute(0, 4, 3, 1, 2)
        return y * m.transpose(1, 2)


class CNNLSTM(nn.Module):
    """Input N,T,3,H,W (frames first). The CNN runs on the N*T frames and gives each frame's
    target map (FrameCNN, target_map=True: 8x8 for 64x64 frames); `cells` (CellLSTM) runs an LSTM
    over the frames at every cell and gates its hidden states by the map, giving N,32,T,8,8 (the
    CAM family's layer). With attention=False the logits are a linear map of the gated states
    summed over time and cells; with attention=True of their attention-weighted average (weights:
    softmax over all frames and cells of a small scorer on each state, the attention pooling of
    attention-LSTMs). Summing, not averaging: an average over the 1024 cells, most of them empty,
    made the model grow steep weights and IG's path rough (docs/cam.md). Trained in two stages
    (tools/zoo/train_zoo.py): the frame CNN on the target masks, then the rest on its frozen
    maps."""

    def __init__(self, num_classes=8, dim=64, hidden=32, attention=False, cells=64):
        super().__init__()
        self.cnn = FrameCNN(dim, target_map=True)
        self.grid = int(round(cells ** 0.5))
        self.cells = CellLSTM(16, hidden)
        self.attention = attention
        if attention:
            self.attn = nn.Sequential(nn.Linear(hidden, 32), nn.Tanh(), nn.Linear(32, 1))
        self.fc = nn.Linear(hidden, num_classes)

    def frame_features(self, frames):
        """(N*T, 3, H, W) frames -> (N*T, cells) target maps."""
        return self.cnn(frames)

    def temporal(self, maps):
        """Logits from the per-frame maps (N, T, cells)."""
        n, t = maps.shape[0], maps.shape[1]
        g = self.cells(maps.reshape(n, t, 1, self.grid, self.grid))     # N,D,T,h,w
        if self.attention:
            gf = g.flatten(2).transpose(1, 2)                           # N,T*h*w,D
            a = torch.softmax(self.attn(gf), dim=1)
            return self.fc((a * gf).sum(dim=1))
        return self.fc(g.sum(dim=(2, 3, 4)))

    def forward(self, x):
        n, t = x.shape[0], x.shape[1]
        return self.temporal(self.cnn(x.flatten(0, 1)).reshape(n, t, -1))


def action_cnn_lstm(num_classes=8):
    return CNNLSTM(num_classes)


def action_cnn_lstm_attn(num_classes=8):
    return CNNLSTM(num_classes, attention=True)


# ----------------------------------------------------------------------------------------------
# TimeSformer-style video transformer
# ----------------------------------------------------------------------------------------------

class DividedBlock(nn.Module):
    """Divided space-time attention (TimeSformer): x + TimeAttn(LN(x)) over the frames at each
    spatial position, then x + SpaceAttn(LN(x)) over the positions of each frame, then an MLP."""

    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.norm_time = nn.LayerNorm(dim)
        self.time_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_space = nn.LayerNorm(dim)
        self.space_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x):                                   # x: N,T,S,D
        n, t, s, d = x.shape
        xt = x.transpose(1, 2).reshape(n * s, t, d)
        h = self.norm_time(xt)
        xt = xt + self.time_attn(h, h, h, need_weights=False)[0]
        xs = xt.reshape(n, s, t, d).transpose(1, 2).reshape(n * t, s, d)
        h = self.norm_space(xs)
        xs = xs + self.space_attn(h, h, h, need_weights=False)[0]
        xs = xs + self.mlp(self.norm_mlp(xs))
        return xs.reshape(n, t, s, d)


class TimeSformer(nn.Module):
    """A TimeSformer-style transformer on per-frame CNN features (a hybrid, as ViT-hybrid and
    video transformers over CNN features are): the frame CNN of the CNN+LSTM (FrameCNN with the
    target map, trained first on the target masks and then frozen) gives every frame a 16 x 8 x 8
    feature map (`cnn.reduce`); the tubelet embedding (Conv3d, kernel = stride = 2 x 2 x 2) turns
    the (N, 16, T, 8, 8) stack into an 8 x (4 x 4) grid of tokens (each covering 2 frames x 16 x
    16 pixels of a 16 x 64 x 64 clip); separate learned temporal and spatial position
    embeddings; divided space-time blocks; LayerNorm; attention pooling over all tokens; linear
    head. The pooling weights are a softmax over the clip's tokens of `target`, a linear score of
    each token that training supervises with the fraction of the token's tubelet the target
    covers, so the head reads the tokens where the target is. A plain linear patch embedding on
    pixels learned too slowly on two CPU cores (30 % after 12 epochs), and so did a convolutional
    stem trained end to end."""

    def __init__(self, num_classes=8, frames=16, size=64, dim=96, depth=3, heads=4, mlp_dim=192,
                 cnn_dim=64):
        super().__init__()
        self.cnn = FrameCNN(cnn_dim, target_map=True)
        self.embed = nn.Conv3d(16, dim, 2, 2)
        self.tubelet = (2, 16, 16)                          # input pixels per token
        self.grid = (frames // 2, size // 16, size // 16)
        self.feat_hw = size // 8
        tg, hg, wg = self.grid
        self.time_embed = nn.Parameter(0.02 * torch.randn(1, tg, 1, dim))
        self.space_embed = nn.Parameter(0.02 * torch.randn(1, 1, hg * wg, dim))
        self.blocks = nn.ModuleList([DividedBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.target = nn.Linear(dim, 1)
        self.head = nn.Linear(dim, num_classes)

    def frame_features(self, frames):
        """(N*T, 3, H, W) frames -> (N*T, 16*h*w) flattened `cnn.reduce` maps."""
        return self.cnn(frames, reduced=True)

    def temporal(self, f, scores=False):
        """Logits (and, with scores=True, the token scores N,T',S,1) from frame features
        (N, T, 16*h*w)."""
        n, t = f.shape[0], f.shape[1]
        x = f.reshape(n, t, 16, self.feat_hw, self.feat_hw).transpose(1, 2)   # N,16,T,h,w
        x = self.embed(x).flatten(3).permute(0, 2, 3, 1)    # N,T',S,D
        x = x + self.time_embed + self.space_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        a = self.target(x)                                  # N,T',S,1
        w = torch.softmax(a.reshape(n, -1), dim=1)
        logits = self.head((w.unsqueeze(2) * x.reshape(n, -1, x.shape[-1])).sum(dim=1))
        return (logits, a) if scores else logits

    def forward(self, x):                                   # N,3,T,H,W
        n, t = x.shape[0], x.shape[2]
        frames = x.transpose(1, 2).flatten(0, 1)            # N*T,3,H,W
        return self.temporal(self.frame_features(frames).reshape(n, t, -1))


def action_timesformer(num_classes=8):
    return TimeSformer(num_classes)


# ----------------------------------------------------------------------------------------------
# Procedure (phase) models
# ----------------------------------------------------------------------------------------------

class PhaseCNN(nn.Module):
    """Per-frame CNN with a phase head and a tool-presence head (multi-task, as TeCNO's feature
    extractor is trained). forward returns (features, phase logits, tool logits)."""

    def __init__(self, num_phases=7, num_tools=7, dim=64):
        super().__init__()
        self.cnn = FrameCNN(dim, widths=(16, 32, 64))
        self.phase = nn.Linear(dim, num_phases)
        self.tools = nn.Linear(dim, num_tools)

    def forward(self, x):
        f = self.cnn(x)
        return f, self.phase(f), self.tools(f)


class CausalResidual(nn.Module):
    """Causal dilated residual layer: x + 1x1(ReLU(dilated 3-tap conv on x padded on the left))."""

    def __init__(self, dilation, channels):
        super().__init__()
        self.dilation = dilation
        self.conv_dilated = nn.Conv1d(channels, channels, 3, dilation=dilation)
        self.conv_1x1 = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(0.3)

    def forward(self, x):
        h = F.relu(self.conv_dilated(F.pad(x, (2 * self.dilation, 0))))
        return x + self.dropout(self.conv_1x1(h))


class CausalStage(nn.Module):
    def __init__(self, in_dim, maps, num_classes, layers):
        super().__init__()
        self.conv_in = nn.Conv1d(in_dim, maps, 1)
        self.layers = nn.ModuleList([CausalResidual(2 ** i, maps) for i in range(layers)])
        self.conv_out = nn.Conv1d(maps, num_classes, 1)

    def forward(self, x):
        x = self.conv_in(x)
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)


class CausalMSTCN(nn.Module):
    """TeCNO-style causal MS-TCN: stage 1 on the features, later stages refine softmax of the
    previous stage's logits. forward_all returns every stage's logits (for the training loss);
    forward returns the last stage's per-frame logits N,7,T."""

    def __init__(self, in_dim=64, maps=32, num_classes=7, stages=2, layers=9):
        super().__init__()
        self.stages = nn.ModuleList(
            [CausalStage(in_dim if i == 0 else num_classes, maps, num_classes, layers)
             for i in range(stages)])

    def forward_all(self, x):
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.softmax(x, dim=1))
            outs.append(x)
        return outs

    def forward(self, x):
        return self.forward_all(x)[-1]


class PhaseCNNLSTM(nn.Module):
    """Per-frame CNN + unidirectional (causal) LSTM: N,T,3,H,W -> N,7,T per-frame logits (class
    axis 1, like the MS-TCN's output)."""

    def __init__(self, num_phases=7, dim=64, hidden=64):
        super().__init__()
        self.cnn = FrameCNN(dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_phases)

    def forward(self, x):
        n, t = x.shape[0], x.shape[1]
        feats = self.cnn(x.flatten(0, 1)).reshape(n, t, -1)
        h, _ = self.lstm(feats)
        return self.fc(h).transpose(1, 2)
