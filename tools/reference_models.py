"""PyTorch models with the module names of the reference repositories, for tests/pytorch.rs.

Written from the layouts documented in src/pytorch/reference.rs (not copied from either code
base), so that their ``state_dict()`` keys are the references' own:

* RLNet (sreetamasarkar/rlnet): ``teacher`` (ResNet18 with ``shortcut.0``/``shortcut.1`` and
  one shortcut BN for every domain; with triple BN, ``conv_sc``/``bn_sc`` split) and
  ``student`` (``conv_sc``/``bn_sc`` split, masks passed to ``forward`` as a list); WRN-22-8's
  names are the same for both. Split BN layers hold ``BN_c``, ``BN_a`` (and ``BN_r``);
  ``bn=1`` is the reference's single-BN mode.
* SNL (NYU-DICE-Lab/selective_network_linearization): ``snl``: one BN per layer, each masked
  ReLU an ``alpha*.alphas`` parameter of shape (1, C, H, W); no ReLU after the ResNet18 stem
  nor after the WRN's final BN.

Channel widths are the reference's times ``width`` (rounded half up, at least 1), so tests can
run small models with the reference's names. The models take normalised inputs, as the
references do: ``normalise`` applies CIFAR-10's mean and std.

Usage (tests/pytorch.rs drives both):

    reference_models.py make CASE.json OUT_DIR
        builds the case's model with random weights, BN statistics and masks, saves it as the
        reference's training scripts do (OUT_DIR/model.pth), and writes OUT_DIR/images.f32
        (256 images in [0, 1]) and OUT_DIR/logits_<bn>.f32 for each BN set, in eval mode.
    reference_models.py logits CASE.json PTH IMAGES OUT_PREFIX
        loads PTH into the case's model with load_state_dict(strict=True) and writes
        OUT_PREFIX<bn>.f32 for each BN set on IMAGES.

CASE.json: {"arch": "resnet18"|"wrn", "layout": "teacher"|"student"|"snl", "bn": 1|2|3,
"width": float, "format": "zip"|"legacy", "dtype": "f32"|"f16"|"bf16", "prefix": bool,
"wrap": bool (false: the state dict saved alone, not inside the scripts' dict), "seed": int,
"images": int}.
"""

import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
SETS = {1: ["BN"], 2: ["BN_c", "BN_a"], 3: ["BN_c", "BN_r", "BN_a"]}


def width(base, w):
    return max(1, int(math.floor(base * w + 0.5)))


class SplitBN(nn.Module):
    """BN_c, (BN_r,) BN_a; ``idx`` picks one (0 clean, then AugMix for triple, last adv)."""

    def __init__(self, c, n):
        super().__init__()
        self.BN_c = nn.BatchNorm2d(c)
        if n == 3:
            self.BN_r = nn.BatchNorm2d(c)
        self.BN_a = nn.BatchNorm2d(c)
        self.sets = [self.BN_c] + ([self.BN_r] if n == 3 else []) + [self.BN_a]

    def forward(self, x, idx):
        return self.sets[idx](x)


class PlainBN(nn.BatchNorm2d):
    def forward(self, x, idx=0):
        return super().forward(x)


def norm(c, bn):
    return PlainBN(c) if bn == 1 else SplitBN(c, bn)


def masked_relu(x, m):
    """relu(m*x) + (1-m)*x; no mask: a plain ReLU."""
    if m is None:
        return F.relu(x)
    return F.relu(x * m) + x * (1 - m)


class Alpha(nn.Module):
    """SNL's LearnableAlpha: relu(x)*a + (1-a)*x with a of shape (1, C, H, W)."""

    def __init__(self, c, h):
        super().__init__()
        self.alphas = nn.Parameter(torch.ones(1, c, h, h))

    def forward(self, x):
        a = self.alphas.expand_as(x)
        return F.relu(x) * a + (1 - a) * x


def conv(cin, cout, k, stride):
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)


class ResBlock(nn.Module):
    def __init__(self, cin, p, stride, size, bn, layout):
        super().__init__()
        self.layout = layout
        self.conv1 = conv(cin, p, 3, stride)
        self.bn1 = norm(p, 1 if layout == "snl" else bn)
        if layout == "snl":
            self.alpha1 = Alpha(p, size)
        self.conv2 = conv(p, p, 3, 1)
        self.bn2 = norm(p, 1 if layout == "snl" else bn)
        if layout == "snl":
            self.alpha2 = Alpha(p, size)
        self.down = stride != 1 or cin != p
        # The RLNet teacher's (1- or dual-BN) shortcut: one plain BN for every domain.
        self.sequential = self.down and (layout == "snl" or (layout == "teacher" and bn < 3))
        if self.sequential:
            self.shortcut = nn.Sequential(conv(cin, p, 1, stride), nn.BatchNorm2d(p))
        elif self.down:
            self.conv_sc = conv(cin, p, 1, stride)
            self.bn_sc = norm(p, bn)

    def forward(self, x, idx, masks):
        if self.layout == "snl":
            out = self.alpha1(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
        else:
            out = masked_relu(self.bn1(self.conv1(x), idx), masks.pop(0))
            out = self.bn2(self.conv2(out), idx)
        if self.sequential:
            out = out + self.shortcut(x)
        elif self.down:
            out = out + self.bn_sc(self.conv_sc(x), idx)
        else:
            out = out + x
        return self.alpha2(out) if self.layout == "snl" else masked_relu(out, masks.pop(0))


class ResNet18(nn.Module):
    def __init__(self, w, bn, layout, classes=10, size=32):
        super().__init__()
        self.layout = layout
        stem = width(64, w)
        self.conv1 = conv(3, stem, 3, 1)
        self.bn1 = norm(stem, 1 if layout == "snl" else bn)
        cin = stem
        for li, base in enumerate([64, 128, 256, 512]):
            p = width(base, w)
            blocks = []
            for i in range(2):
                stride = 2 if li > 0 and i == 0 else 1
                size //= stride
                blocks.append(ResBlock(cin, p, stride, size, bn, layout))
                cin = p
            setattr(self, f"layer{li + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(cin, classes)

    def forward(self, x, idx, masks):
        masks = list(masks) if masks is not None else [None] * 17
        if self.layout == "snl":
            out = self.bn1(self.conv1(x))  # SNL: no ReLU after the stem
        else:
            out = masked_relu(self.bn1(self.conv1(x), idx), masks.pop(0))
        for li in range(1, 5):
            for blk in getattr(self, f"layer{li}"):
                out = blk(out, idx, masks)
        return self.linear(out.mean((2, 3)))


class WideBlock(nn.Module):
    def __init__(self, cin, cout, stride, size, bn, layout):
        super().__init__()
        self.layout, self.stride = layout, stride
        snl = layout == "snl"
        self.bn1 = norm(cin, 1 if snl else bn)
        if snl:
            self.alpha1 = Alpha(cin, size)
        self.conv1 = conv(cin, cout, 3, stride)
        self.bn2 = norm(cout, 1 if snl else bn)
        self.conv2 = conv(cout, cout, 3, 1)
        if snl:
            self.alpha2 = Alpha(cout, size // stride)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else conv(cin, cout, 1, stride)

    def act(self, which, x, m):
        return getattr(self, which)(x) if self.layout == "snl" else masked_relu(x, m)

    def forward(self, x, idx, masks):
        a = self.act("alpha1", self.bn1(x, idx), None if self.layout == "snl" else masks.pop(0))
        out = self.act("alpha2", self.bn2(self.conv1(a), idx), None if self.layout == "snl" else masks.pop(0))
        out = self.conv2(out)
        return (x if self.equal else self.convShortcut(a)) + out


class WideGroup(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.layer = nn.Sequential(*blocks)


class WideResNet(nn.Module):
    def __init__(self, w, bn, layout, depth=22, k=8, classes=10, size=32):
        super().__init__()
        self.layout = layout
        n = (depth - 4) // 6
        widths = [width(c, w) for c in [16, 16 * k, 32 * k, 64 * k]]
        self.conv1 = conv(3, widths[0], 3, 1)
        cin = widths[0]
        for gi, stride in enumerate([1, 2, 2]):
            blocks = []
            for i in range(n):
                s = stride if i == 0 else 1
                blocks.append(WideBlock(cin, widths[gi + 1], s, size, bn, layout))
                size //= s
                cin = widths[gi + 1]
            setattr(self, f"block{gi + 1}", WideGroup(blocks))
        self.bn1 = norm(cin, 1 if layout == "snl" else bn)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x, idx, masks):
        masks = list(masks) if masks is not None else [None] * 64
        out = self.conv1(x)
        for gi in range(1, 4):
            for blk in getattr(self, f"block{gi}").layer:
                out = blk(out, idx, masks)
        out = self.bn1(out, idx)
        if self.layout != "snl":  # SNL: no ReLU after the final BN
            out = masked_relu(out, masks.pop(0))
        return self.fc(out.mean((2, 3)))


def build(case):
    bn = 1 if case["layout"] == "snl" else case["bn"]
    if case["arch"] == "resnet18":
        return ResNet18(case["width"], bn, case["layout"])
    return WideResNet(case["width"], bn, case["layout"])


def mask_shapes(model):
    """(C, H, W) of every masked-ReLU site in forward order, found by tracing one input."""
    shapes = []
    orig = masked_relu

    def spy(x, m):
        shapes.append(tuple(x.shape[1:]))
        return orig(x, m)

    globals()["masked_relu"] = spy
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32), 0, None)
    globals()["masked_relu"] = orig
    return shapes


def normalise(x):
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def randomise(model, gen):
    """Random BN affine parameters and running statistics (different in every set), SNL α
    binary at random, so that every tensor matters to the logits."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
                m.num_batches_tracked.fill_(7)
            if isinstance(m, Alpha):
                m.alphas.copy_((torch.rand(m.alphas.shape, generator=gen) < 0.3).float())


def random_masks(shapes, gen):
    """int64 {0, 1} masks as the reference's top-k makes them; one site all linear, one all
    ReLU, the others about 30% kept."""
    out = []
    for i, s in enumerate(shapes):
        if i == 1:
            out.append(torch.zeros(s, dtype=torch.int64))
        elif i == 2:
            out.append(torch.ones(s, dtype=torch.int64))
        else:
            out.append((torch.rand(s, generator=gen) < 0.3).long())
    return out


def bn_indices(case):
    """(name, index) of each BN set the case's model can run."""
    bn = 1 if case["layout"] == "snl" else case["bn"]
    return [(s, i) for i, s in enumerate(SETS[bn])]


def write_logits(model, masks, images, prefix, case):
    model.eval()
    with torch.no_grad():
        x = normalise(images)
        fmasks = None if masks is None else [m.float() for m in masks]
        for name, idx in bn_indices(case):
            z = model(x, idx, fmasks)
            z.numpy().astype("<f4").tofile(f"{prefix}{name}.f32")


def make(case, out):
    gen = torch.Generator().manual_seed(case["seed"])
    torch.manual_seed(case["seed"])
    model = build(case)
    randomise(model, gen)
    masks = None
    if case["layout"] == "student":
        masks = random_masks(mask_shapes(model), gen)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[case["dtype"]]
    sd = model.state_dict()
    if dtype != torch.float32:
        sd = type(sd)((k, v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items())
        # The logits are those of the rounded weights, which is what the file holds.
        model.load_state_dict(type(sd)((k, v.float() if v.is_floating_point() else v) for k, v in sd.items()))
    if case["prefix"]:
        sd = type(sd)(("module." + k, v) for k, v in sd.items())
    if not case.get("wrap", True):
        saved = sd  # the state dict alone
    elif case["layout"] == "snl":
        saved = {"arch": case["arch"], "state_dict": sd, "optimizer": torch.optim.SGD(model.parameters(), 0.1, momentum=0.9).state_dict()}
    else:
        saved = {"epoch": 3, "model": sd, "best_acc": torch.tensor(12.5)}
        if masks is not None:
            saved["mask_epoch"] = masks
    torch.save(saved, f"{out}/model.pth", _use_new_zipfile_serialization=case["format"] == "zip")
    images = torch.rand(case["images"], 3, 32, 32, generator=gen)
    images.numpy().astype("<f4").tofile(f"{out}/images.f32")
    write_logits(model, masks, images, f"{out}/logits_", case)


def logits(case, pth, images, prefix):
    model = build(case)
    saved = torch.load(pth, weights_only=True)
    sd = saved["state_dict"] if case["layout"] == "snl" else saved["model"]
    model.load_state_dict(sd, strict=True)
    masks = saved.get("mask_epoch")
    if case["layout"] == "student" and masks is None:
        sys.exit(f"{pth}: no mask_epoch beside the student's state dict")
    x = torch.from_numpy(__import__("numpy").fromfile(images, dtype="<f4")).view(-1, 3, 32, 32)
    write_logits(model, masks, x, prefix, case)


if __name__ == "__main__":
    cmd, case = sys.argv[1], json.load(open(sys.argv[2]))
    torch.set_num_threads(2)
    if cmd == "make":
        make(case, sys.argv[3])
    elif cmd == "logits":
        logits(case, sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(f"unknown command {cmd!r}: expected make or logits")
