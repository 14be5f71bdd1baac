"""PyTorch reference models shared by tools/make_golden.py and tools/torch_peer.py.

Written from the rlnet model definitions (not copied from any other code base):

* ``DualBN``      -- two full ``BatchNorm2d`` (``BN_c`` for clean inputs, ``BN_a`` for
                     adversarial ones); which one runs is selected by ``domain``.
* ``MaskedReLU``  -- ``y = relu(m*z) + (1-m)*z`` with a {0,1} mask ``m`` of shape
                     ``[C,H,W]`` broadcast over the batch.  The mask is a non-persistent
                     buffer, so it never appears in the state dict.
* ``ResNet18``    -- CIFAR ResNet18 (3x3 stem, no max-pool), width multiplier.
* ``WideResNet``  -- pre-activation WRN with explicit group widths.

Both networks take raw pixels in [0,1] and normalise with the CIFAR-10 mean/std
(non-persistent buffers, so again not in the state dict).  Masked ReLUs are numbered
in forward order; ``model.masked_relus()`` returns them in that order.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class DualBN(nn.Module):
    """Two BatchNorm2d layers; ``domain`` ('clean' or 'adv') picks BN_c or BN_a."""

    def __init__(self, channels, eps=1e-5, momentum=0.1):
        super().__init__()
        self.BN_c = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.BN_a = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
        self.domain = "clean"

    def forward(self, x):
        return self.BN_c(x) if self.domain == "clean" else self.BN_a(x)


class MaskedReLU(nn.Module):
    """y = relu(m*z) + (1-m)*z, mask m of shape [C,H,W] (non-persistent buffer)."""

    def __init__(self, channels, height, width):
        super().__init__()
        self.register_buffer("mask", torch.ones(channels, height, width), persistent=False)

    def forward(self, z):
        m = self.mask.to(z.dtype)  # keep bf16 activations bf16 under autocast
        return F.relu(m * z) + (1.0 - m) * z


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, padding=0, bias=False)


def conv_out(size, stride):
    # 3x3/p1 and 1x1/p0 convs give the same output size for a given stride.
    return (size - 1) // stride + 1


class _Base(nn.Module):
    def _init_norm(self):
        self.register_buffer("in_mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x):
        return (x - self.in_mean) / self.in_std

    def set_domain(self, domain):
        assert domain in ("clean", "adv"), domain
        for m in self.modules():
            if isinstance(m, DualBN):
                m.domain = domain
        return self

    def masked_relus(self):
        """[(name, module)] in forward order (registration order matches forward order)."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, MaskedReLU)]


# --------------------------------------------------------------------------- ResNet18


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, in_hw):
        super().__init__()
        out_hw = conv_out(in_hw, stride)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = DualBN(cout)
        self.relu1 = MaskedReLU(cout, out_hw, out_hw)  # mReLU (a)
        self.conv2 = conv3x3(cout, cout, 1)
        self.bn2 = DualBN(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv1x1(cin, cout, stride), DualBN(cout))
        else:
            self.shortcut = nn.Sequential()
        self.relu2 = MaskedReLU(cout, out_hw, out_hw)  # mReLU (b)
        self.out_hw = out_hw

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet18(_Base):
    """CIFAR ResNet18; stage widths round(64*w), round(128*w), round(256*w), round(512*w)."""

    def __init__(self, width_mult=1.0, num_classes=10, image_size=32):
        super().__init__()
        self._init_norm()
        widths = [max(1, int(round(c * width_mult))) for c in (64, 128, 256, 512)]
        self.widths = widths
        hw = image_size
        self.conv1 = conv3x3(3, widths[0], 1)
        self.bn1 = DualBN(widths[0])
        self.relu = MaskedReLU(widths[0], hw, hw)
        cin = widths[0]
        for li, (w, s) in enumerate(zip(widths, (1, 2, 2, 2)), start=1):
            blocks = []
            for bi in range(2):
                stride = s if bi == 0 else 1
                blk = BasicBlock(cin, w, stride, hw)
                hw = blk.out_hw
                cin = w
                blocks.append(blk)
            setattr(self, f"layer{li}", nn.Sequential(*blocks))
        self.linear = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x, return_taps=False):
        out = self.relu(self.bn1(self.conv1(self.normalize(x))))
        taps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            taps.append(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        logits = self.linear(out)
        return (logits, taps) if return_taps else logits


# --------------------------------------------------------------------------- WideResNet


class WideBlock(nn.Module):
    """Pre-activation block: BN1 -> mReLU -> conv3x3(s) -> BN2 -> mReLU -> conv3x3(1);
    out = shortcut + that, shortcut = x (in == out) or conv1x1(s)(activated x)."""

    def __init__(self, cin, cout, stride, in_hw):
        super().__init__()
        out_hw = conv_out(in_hw, stride)
        self.bn1 = DualBN(cin)
        self.relu1 = MaskedReLU(cin, in_hw, in_hw)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = DualBN(cout)
        self.relu2 = MaskedReLU(cout, out_hw, out_hw)
        self.conv2 = conv3x3(cout, cout, 1)
        self.equal_in_out = cin == cout
        if not self.equal_in_out:
            self.convShortcut = conv1x1(cin, cout, stride)
        else:
            assert stride == 1, "identity shortcut needs stride 1"
        self.out_hw = out_hw

    def forward(self, x):
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        short = x if self.equal_in_out else self.convShortcut(a)
        return short + out


class WideGroup(nn.Module):
    def __init__(self, n, cin, cout, stride, in_hw):
        super().__init__()
        blocks = []
        hw = in_hw
        for i in range(n):
            blk = WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, hw)
            hw = blk.out_hw
            blocks.append(blk)
        self.layer = nn.Sequential(*blocks)
        self.out_hw = hw

    def forward(self, x):
        return self.layer(x)


class WideResNet(_Base):
    """Pre-activation WRN: widths = [stem, group1, group2, group3], depth = 6n+4."""

    def __init__(self, depth=22, widths=(16, 128, 256, 512), num_classes=10, image_size=32):
        super().__init__()
        assert (depth - 4) % 6 == 0, "depth must be 6n+4"
        n = (depth - 4) // 6
        self._init_norm()
        self.widths = list(widths)
        hw = image_size
        self.conv1 = conv3x3(3, widths[0], 1)
        self.block1 = WideGroup(n, widths[0], widths[1], 1, hw)
        self.block2 = WideGroup(n, widths[1], widths[2], 2, self.block1.out_hw)
        self.block3 = WideGroup(n, widths[2], widths[3], 2, self.block2.out_hw)
        hw = self.block3.out_hw
        self.bn1 = DualBN(widths[3])
        self.relu = MaskedReLU(widths[3], hw, hw)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / k))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x, return_taps=False):
        out = self.conv1(self.normalize(x))
        taps = []
        for g in (self.block1, self.block2, self.block3):
            out = g(out)
            taps.append(out)
        out = self.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        logits = self.fc(out)
        return (logits, taps) if return_taps else logits


def wrn22_8(width_mult=1.0, num_classes=10):
    widths = [max(1, int(round(c * width_mult))) for c in (16, 128, 256, 512)]
    return WideResNet(22, widths, num_classes)


def build(name, width_mult=1.0, num_classes=10):
    if name == "resnet18":
        return ResNet18(width_mult, num_classes)
    if name in ("wrn22-8", "wrn22_8"):
        return wrn22_8(width_mult, num_classes)
    raise ValueError(f"unknown model {name!r}")
