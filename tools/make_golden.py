#!/usr/bin/env python3
"""Golden fixtures for rlnet, computed with PyTorch.

Usage:  python3 tools/make_golden.py [--out DIR] [CASE...]
        (default DIR: tests/fixtures/golden; naming cases rewrites only those folders)

Every case is a folder ``DIR/<case>/`` holding ``.npy`` files (``numpy.save``; float32
unless stated, labels int64, C-contiguous, NCHW activations, OIHW conv weights, [out,in]
linear weights) plus ``meta.json`` (hyper-parameters, shapes, seed, torch version).

How the numbers are made: each case seeds ``torch.manual_seed`` with its own fixed seed
(so cases do not depend on one another or on their order), draws its inputs in float64,
ROUNDS THEM TO FLOAT32 (so the stored inputs are exactly the inputs that were used),
computes everything in float64 and stores the results cast to float32.  Gradients are
those of ``sum(y * dy)`` for a random upstream gradient ``dy`` unless a scalar loss is
named.

Cases
-----
conv_k3s1p1, conv_k3s2p1, conv_k1s2p0, conv_k1s1p0, conv_k3s2p1_even
    ``y = F.conv2d(x, w, stride, padding)`` (no bias).  Files: x, w, y, dy, dx, dw.
    Shapes: k3s1p1 x[2,3,7,7] w[4,3,3,3]; k3s2p1 x[2,4,9,9] w[5,4,3,3];
    k1s2p0 x[2,4,8,8] w[6,4,1,1]; k1s1p0 x[3,5,6,6] w[4,5,1,1];
    k3s2p1_even x[2,3,8,8] w[4,3,3,3] (even size: output 4x4; the top/left zero padding
    is read but the bottom/right padding never is, and the last input row/column is
    reached only by the bottom/right kernel taps of the last window).

bn_relu_train, bn_train, bn_add_relu_train, bn_relu_eval, bn_relu_train_allones
    Fused BatchNorm + masked ReLU on x[4,3,5,5]:
        z = gamma*(x-mean)/sqrt(var+eps) + beta (+ r),   y = relu(m*z) + (1-m)*z
    with m a {0,1} mask [C,H,W] broadcast over the batch.  Train mode: batch mean and
    biased batch variance; running_mean = 0.9*rm + 0.1*mean, running_var = 0.9*rv +
    0.1*unbiased_var (momentum 0.1, eps 1e-5; PyTorch's F.batch_norm does the update).
    Eval mode: running statistics, running stats unchanged.
    Files: x, gamma, beta, running_mean_in, running_var_in, mask (float32 0/1), [r], y, dy,
    dx, dgamma, dbeta, [dr], running_mean_out, running_var_out.
    bn_train has no ReLU at all; its mask file is all zeros (which makes the masked ReLU
    the identity), so a fused kernel can be fed it directly.  bn_add_relu_train adds the
    residual r[4,3,5,5] before the masked ReLU and writes dr.  bn_relu_train_allones has
    an all-ones mask (plain ReLU).

linear
    x[4,6], w[5,6], b[5]: y = x w^T + b.  Files: x, w, b, y, dy, dx, dw, db.

cross_entropy
    logits[6,10], labels int64[6].  Files: logits, labels, loss_mean[1], loss_sum[1],
    dlogits_mean, dlogits_sum.

kl_t4
    s[6,10], t[6,10], T = 4:
    loss = T^2 * (1/N) * sum_n sum_k p_t (log p_t - log p_s), p = softmax(./T)
         = F.kl_div(F.log_softmax(s/T,1), F.softmax(t/T,1), reduction='batchmean') * T*T.
    Files: s, t, loss[1], ds (the teacher gets no gradient).

attention
    fs[3,4,5,5], ft[3,4,5,5]: a(F) = F.normalize(F.pow(2).mean(1).view(N,-1)) (p=2,
    eps 1e-12), loss = (a(fs) - a(ft)).pow(2).mean().  Files: fs, ft, loss[1], dfs.

jsd
    zc[6,10], z1[6,10], z2[6,10] (clean, augmented 1, augmented 2 logits), AugMix's
    Jensen-Shannon consistency loss (augmix/cifar.py):
        p = softmax(z), M = clamp((pc + p1 + p2)/3, 1e-7, 1).log(),
        loss = (kl_div(M, pc) + kl_div(M, p1) + kl_div(M, p2)) / 3, reduction='batchmean',
    gradients through M too (no detach), lambda not applied.  Row 0 has one class 25 below
    the others in all three, so M is clamped at 1e-7 there (the clamp branch of the gradient).
    Files: zc, z1, z2, loss[1], dzc, dz1, dz2.

soft_relu
    SNL's soft ReLU (Cho et al. 2022): z[4,3,4,5], alpha[3,4,5] shared by the batch,
        y = alpha * relu(z) + (1 - alpha) * z
    (torch's relu'(0) = 0, so dz = dy * (1 - alpha) where z == 0).  Every 7th z is exactly
    0; alpha holds 0s, 1s, values in (0,1), negatives and values above 1.  Gradients of
    sum(y * dy): dz and dalpha (summed over the batch).  Files: z, alpha, y, dy, dz, dalpha.

adam
    torch.optim.Adam (lr 0.01, betas (0.9, 0.999), eps 1e-8, foreach=False), computed in
    FLOAT32 (unlike the other cases: the optimiser's own f32 rounding is what is tested) for
    4 steps on three float32 tensors w[3,4], alpha[2,5], b[5] with given loss gradients, in
    two runs: "snl" (no weight decay; SNL's L1 penalty 0.3*sum|alpha| differentiated by
    autograd, so alpha.grad = g + 0.3*sign(alpha), alpha[0,0] = 0 with sign 0; alpha starts
    small so some elements cross zero) and "wd" (weight_decay 0.01, no L1).  b has no loss
    gradient at step 1 (skipped, its step count does not advance) and alpha none at step 2
    (in "snl" the penalty alone is its gradient; in "wd" it is skipped).  Files per run
    (snl, wd) and tensor n: <run>_init__n, <run>_grad<k>__n (absent = no loss gradient at
    step k), <run>_step<k>__n (after step k), <run>_exp_avg<k>__n, <run>_exp_avg_sq<k>__n
    (the moments after step k, once the tensor has stepped), k = 0..3.

resnet18_w0125
    CIFAR ResNet18 at width 0.125 (stem 3->8; stages 8,16,32,64), dual BN everywhere
    (BN_c / BN_a, the 1x1-shortcut BN too), 17 masked ReLUs (Bernoulli(0.5) masks,
    numbered in forward order: stem, then per block mReLU(a), mReLU(b)), the input is raw
    pixels x[2,3,32,32] ~ U(0,1) normalised inside the model with the CIFAR-10 mean/std.
    Convs Kaiming-normal fan_out; BN gamma ~ U(0.5,1.5), beta ~ U(-0.2,0.2), running_mean
    ~ N(0,0.1), running_var ~ U(0.5,1.5); linear default PyTorch init.
    One forward in train mode with the clean domain (BN_c everywhere), loss = mean CE on
    random labels, backward (no optimiser step).  Then an eval-mode forward with BN_a on
    the same x.  Files:
      x, labels (int64 [2]), param__<name> (every state-dict tensor before the forward,
      running stats included, num_batches_tracked excluded), mask__<i> (float32 [C,H,W],
      i = 0..16), logits, loss[1], grad__<name> (every parameter that gets a gradient;
      BN_a parameters get none and are skipped), dx (gradient wrt the raw input x),
      running_after__<name> (the BN_c running_mean/var after the train forward),
      logits_eval_adv, taps__1..4 (outputs of layer1..layer4, after the block ReLU).
    meta.json lists the state-dict names, the masked-ReLU order (module names, shapes).

wrn_tiny
    Pre-activation WideResNet, depth 10 (one block per group), widths [4,8,16,32],
    dual BN, 7 masked ReLUs (per block: before conv1, before conv2; then the final one),
    same input/normalisation/files as resnet18_w0125 with taps__1..3 the three raw group
    outputs.  Block: a = mReLU(BN1(x)); out = conv2(mReLU(BN2(conv1_s(a)))); output =
    out + (x if in == out else convShortcut_s(a)).  Head: BN -> mReLU -> avg pool -> fc.
    Init: conv N(0, sqrt(2/(k*k*out))), fc bias 0 (fc weight default), BN random as above.

distill_resnet18_w00625
    The student step of stages 2 and 3 (spec §5.1, §6) for every loss mode, on ResNet18 at
    width 0.0625 (stages 4,8,16,32; dual BN everywhere as in resnet18_w0125): a student with
    Bernoulli(0.5) masks and a teacher with all-ones masks (both randomised like the network
    cases), x[5,3,32,32] ~ U(0,1), labels int64[5], H1 = the first ceil(5/2) = 3 images,
    aug[3,3,32,32] ~ U(0,1) (their AugMix view), x_adv[2,3,32,32] = clip(x[H1:] + U(-8/255,
    8/255), 0, 1) given as is (no PGD), weights = [gamma, alpha, beta, T] = [0.3, 0.6, 800, 3].
    Teacher: eval mode, no grad; BN_c on the whole clean batch (logits t, taps T_n), BN_c on
    aug (taps T_a), BN_a on x_adv (taps T_adv). Student, train mode: clean H1 with BN_c (z_n,
    S_n), aug with BN_c (z_a, S_a), x_adv with BN_a (z_adv, S_adv). KL_T = kl_div(log_softmax(
    s/T), softmax(t/T), batchmean)*T^2 against t[H1] (clean, aug) and t[H2] (adv); AT as in
    the attention case summed over the 4 taps; CE mean.  Losses (spec §6's table):
      rslad KL3; rslad+ce g*CE3 + a*KL3; rslad+attn KL3 + b*AT_n; rslad+attn+augattn
      KL3 + b*(AT_n+AT_a)/2; ...+ce g*CE3 + a*KL3 + b*(AT_n+AT_a)/2; ...+advattn
      KL3 + b*(AT_n+AT_a+AT_adv)/3; ...+advattn+ce adds g*CE3 + a*KL3 instead of KL3;
      pgd-at CE3; natural (whole batch clean, BN_c, no aug, no adv) g*CE + a*KL + b*AT
    with CE3 = (CE_n+CE_a+CE_adv)/3, KL3 = (KL_n+KL_a+KL_adv)/3.
    Files: param_s__<name>, param_t__<name> (state dicts), mask_s__<i>, x, aug, x_adv, labels,
    weights[4], and per mode (tag = name with '+' -> '_'): loss__<tag>[1],
    grad__<tag>__<param> for the params in meta "grad_params" (zeros where the loss does not
    reach the parameter); scores__<i> = sum over the clean H1 images of |A^T_i - A^S_i| (the
    masked-ReLU outputs of the teacher's clean pass and the student's clean H1 train pass).

Total size is dominated by the two network cases (parameters and their gradients).
"""

import argparse
import json
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

DT = torch.float64
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "golden")


def seed_for(case):
    s = zlib.crc32(case.encode()) & 0x7FFFFFFF
    torch.manual_seed(s)
    return s


def r32(t):
    """Round a float64 tensor to float32 precision (still float64)."""
    return t.float().double()


def randn(*shape, std=1.0, mean=0.0):
    return r32(torch.randn(*shape, dtype=DT) * std + mean)


def rand(*shape, lo=0.0, hi=1.0):
    return r32(torch.rand(*shape, dtype=DT) * (hi - lo) + lo)


def bernoulli(*shape, p=0.5):
    return torch.bernoulli(torch.full(shape, p, dtype=DT))


class Case:
    def __init__(self, root, name):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir, exist_ok=True)
        for f in os.listdir(self.dir):  # stale files from an older run
            if f.endswith(".npy") or f == "meta.json":
                os.remove(os.path.join(self.dir, f))
        self.seed = seed_for(name)
        self.shapes = {}

    def save(self, fname, t, dtype=np.float32):
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(t).astype(dtype))
        np.save(os.path.join(self.dir, fname + ".npy"), a)
        self.shapes[fname] = list(a.shape)

    def finish(self, meta, summary="", compute_dtype="float64"):
        meta = dict(meta)
        meta.update(case=self.name, seed=self.seed, torch_version=torch.__version__,
                    compute_dtype=compute_dtype, store_dtype="float32 (labels int64)",
                    files=self.shapes)
        with open(os.path.join(self.dir, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
        size = sum(os.path.getsize(os.path.join(self.dir, f)) for f in os.listdir(self.dir))
        print(f"{self.name:24s} {len(self.shapes):3d} arrays {size / 1024:8.1f} KiB  {summary}")
        return size


# --------------------------------------------------------------------------- cases


def case_conv(root, name, xs, ws, stride, padding):
    c = Case(root, name)
    x = randn(*xs).requires_grad_()
    w = randn(*ws, std=(1.0 / (ws[1] * ws[2] * ws[3])) ** 0.5).requires_grad_()
    y = F.conv2d(x, w, None, stride=stride, padding=padding)
    dy = randn(*y.shape)
    dx, dw = torch.autograd.grad((y * dy).sum(), (x, w))
    for k, v in dict(x=x, w=w, y=y, dy=dy, dx=dx, dw=dw).items():
        c.save(k, v)
    return c.finish(dict(op="conv2d", bias=False, stride=stride, padding=padding,
                         kernel=ws[2], grad_of="sum(y*dy)"),
                    f"x{list(xs)} w{list(ws)} -> y{list(y.shape)}")


def masked_relu(z, m):
    return F.relu(m * z) + (1.0 - m) * z


def case_bn(root, name, train, mask_kind, residual):
    c = Case(root, name)
    N, C, H, W = 4, 3, 5, 5
    eps, momentum = 1e-5, 0.1
    x = randn(N, C, H, W, std=1.5, mean=0.3).requires_grad_()
    gamma = rand(C, lo=0.5, hi=1.5).requires_grad_()
    beta = rand(C, lo=-0.2, hi=0.2).requires_grad_()
    rm_in = randn(C, std=0.1)
    rv_in = rand(C, lo=0.5, hi=1.5)
    if mask_kind == "bernoulli":
        mask = bernoulli(C, H, W)
    elif mask_kind == "ones":
        mask = torch.ones(C, H, W, dtype=DT)
    else:  # "none": no ReLU; an all-zero mask is the identity
        mask = torch.zeros(C, H, W, dtype=DT)
    r = randn(N, C, H, W).requires_grad_() if residual else None

    rm, rv = rm_in.clone(), rv_in.clone()
    z = F.batch_norm(x, rm, rv, gamma, beta, training=train, momentum=momentum, eps=eps)
    if r is not None:
        z = z + r
    y = z if mask_kind == "none" else masked_relu(z, mask)
    dy = randn(*y.shape)
    inputs = [x, gamma, beta] + ([r] if r is not None else [])
    grads = torch.autograd.grad((y * dy).sum(), inputs)

    # Cross-check PyTorch's running-stat update against the documented formula.
    if train:
        bm = x.detach().mean((0, 2, 3))
        bv = x.detach().var((0, 2, 3), unbiased=True)
        assert torch.allclose(rm, 0.9 * rm_in + 0.1 * bm)
        assert torch.allclose(rv, 0.9 * rv_in + 0.1 * bv)
    else:
        assert torch.equal(rm, rm_in) and torch.equal(rv, rv_in)

    files = dict(x=x, gamma=gamma, beta=beta, running_mean_in=rm_in, running_var_in=rv_in,
                 mask=mask)
    if r is not None:
        files["r"] = r
    files.update(y=y, dy=dy, dx=grads[0], dgamma=grads[1], dbeta=grads[2])
    if r is not None:
        files["dr"] = grads[3]
    files.update(running_mean_out=rm, running_var_out=rv)
    for k, v in files.items():
        c.save(k, v)
    return c.finish(dict(op="batchnorm_masked_relu", mode="train" if train else "eval",
                         eps=eps, momentum=momentum, relu=mask_kind != "none", mask=mask_kind,
                         residual=residual, grad_of="sum(y*dy)",
                         running_var_update="unbiased batch variance" if train else "none (eval)",
                         normalise_var="biased batch variance" if train else "running_var"),
                    f"x[{N},{C},{H},{W}] {'train' if train else 'eval'} mask={mask_kind}"
                    + (" +residual" if residual else ""))


def case_linear(root):
    c = Case(root, "linear")
    x = randn(4, 6).requires_grad_()
    w = randn(5, 6, std=0.4).requires_grad_()
    b = randn(5, std=0.1).requires_grad_()
    y = F.linear(x, w, b)
    dy = randn(*y.shape)
    dx, dw, db = torch.autograd.grad((y * dy).sum(), (x, w, b))
    for k, v in dict(x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db).items():
        c.save(k, v)
    return c.finish(dict(op="linear", formula="y = x w^T + b", grad_of="sum(y*dy)"),
                    "x[4,6] w[5,6] b[5]")


def case_cross_entropy(root):
    c = Case(root, "cross_entropy")
    logits = randn(6, 10, std=2.0).requires_grad_()
    labels = torch.randint(0, 10, (6,))
    lm = F.cross_entropy(logits, labels, reduction="mean")
    ls = F.cross_entropy(logits, labels, reduction="sum")
    (gm,) = torch.autograd.grad(lm, logits)
    (gs,) = torch.autograd.grad(ls, logits)
    c.save("logits", logits)
    c.save("labels", labels, np.int64)
    c.save("loss_mean", lm.reshape(1))
    c.save("loss_sum", ls.reshape(1))
    c.save("dlogits_mean", gm)
    c.save("dlogits_sum", gs)
    return c.finish(dict(op="cross_entropy", classes=10),
                    f"loss_mean={lm.item():.6f} loss_sum={ls.item():.6f}")


def case_kl(root):
    c = Case(root, "kl_t4")
    T = 4.0
    s = randn(6, 10, std=3.0).requires_grad_()
    t = randn(6, 10, std=3.0)
    loss = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
    # The same from the written definition.
    pt, lps = F.softmax(t / T, 1), F.log_softmax(s / T, 1)
    ref = T * T * (pt * (pt.log() - lps)).sum() / s.shape[0]
    assert torch.allclose(loss, ref)
    (ds,) = torch.autograd.grad(loss, s)
    for k, v in dict(s=s, t=t, loss=loss.reshape(1), ds=ds).items():
        c.save(k, v)
    return c.finish(dict(op="kl_div_distill", T=T, reduction="batchmean * T^2"),
                    f"loss={loss.item():.6f}")


def attention_map(f):
    return F.normalize(f.pow(2).mean(1).view(f.shape[0], -1), p=2, dim=1, eps=1e-12)


def case_attention(root):
    c = Case(root, "attention")
    fs = randn(3, 4, 5, 5).requires_grad_()
    ft = randn(3, 4, 5, 5)
    loss = (attention_map(fs) - attention_map(ft)).pow(2).mean()
    (dfs,) = torch.autograd.grad(loss, fs)
    for k, v in dict(fs=fs, ft=ft, loss=loss.reshape(1), dfs=dfs).items():
        c.save(k, v)
    return c.finish(dict(op="attention_transfer", p=2, eps=1e-12,
                         formula="a(F)=normalize(F.pow(2).mean(1).view(N,-1)); mean((a(fs)-a(ft))^2)"),
                    f"loss={loss.item():.6e}")


def case_jsd(root):
    c = Case(root, "jsd")
    zs = [randn(6, 10, std=2.0) for _ in range(3)]
    for z in zs:  # a class far below the rest in every view: M < 1e-7 there, clamped
        z[0, 3] -= 25.0
    zs = [r32(z).requires_grad_() for z in zs]
    pc, p1, p2 = (F.softmax(z, dim=1) for z in zs)
    m = torch.clamp((pc + p1 + p2) / 3.0, 1e-7, 1).log()
    loss = (F.kl_div(m, pc, reduction="batchmean") + F.kl_div(m, p1, reduction="batchmean")
            + F.kl_div(m, p2, reduction="batchmean")) / 3.0
    assert ((pc + p1 + p2) / 3.0)[0, 3] < 1e-7, "the clamp branch is not exercised"
    # The same from the written definition (0 log 0 never occurs here: no p underflows).
    mm = torch.clamp((pc + p1 + p2) / 3.0, 1e-7, 1)
    ref = sum((p * (p.log() - mm.log())).sum() for p in (pc, p1, p2)) / (3 * zs[0].shape[0])
    assert torch.allclose(loss, ref)
    grads = torch.autograd.grad(loss, zs)
    for k, v in dict(zc=zs[0], z1=zs[1], z2=zs[2], loss=loss.reshape(1), dzc=grads[0],
                     dz1=grads[1], dz2=grads[2]).items():
        c.save(k, v)
    return c.finish(dict(op="jsd_augmix", clamp=[1e-7, 1.0], reduction="batchmean, mean of 3",
                         formula="(1/3) sum_p kl_div(log clamp((pc+p1+p2)/3), p, batchmean)",
                         detach_mixture=False, weight_applied=False),
                    f"loss={loss.item():.6e}")


def case_soft_relu(root):
    c = Case(root, "soft_relu")
    N, C, H, W = 4, 3, 4, 5
    z = randn(N, C, H, W)
    z.view(-1)[::7] = 0.0
    alpha = rand(C, H, W, lo=-0.7, hi=1.7)  # negatives, (0, 1) and above 1
    alpha.view(-1)[0:6] = 0.0
    alpha.view(-1)[6:12] = 1.0
    z, alpha = z.requires_grad_(), alpha.requires_grad_()
    y = alpha * F.relu(z) + (1.0 - alpha) * z
    dy = randn(*y.shape)
    dz, dalpha = torch.autograd.grad((y * dy).sum(), (z, alpha))
    zero = z.detach() == 0
    assert zero.any() and ((alpha < 0).any() and (alpha > 1).any())
    assert torch.equal(dz[zero], (dy * (1.0 - alpha.detach()).expand_as(dy))[zero]), \
        "relu'(0) is not 0 here"
    for k, v in dict(z=z, alpha=alpha, y=y, dy=dy, dz=dz, dalpha=dalpha).items():
        c.save(k, v)
    return c.finish(dict(op="soft_relu", formula="alpha*relu(z)+(1-alpha)*z",
                         alpha_shared_over_batch=True, relu_grad_at_0=0, grad_of="sum(y*dy)"),
                    f"z{[N, C, H, W]} alpha{[C, H, W]}, {int(zero.sum())} exact zeros")


ADAM_RUNS = {  # run name -> (weight_decay, L1 lambda on "alpha")
    "snl": (0.0, 0.3),
    "wd": (0.01, 0.0),
}
ADAM_SHAPES = {"w": (3, 4), "alpha": (2, 5), "b": (5,)}
ADAM_MISSING = {("b", 1), ("alpha", 2)}  # (tensor, step) pairs with no loss gradient
ADAM_STEPS, ADAM_LR = 4, 0.01


def case_adam(root):
    c = Case(root, "adam")
    init = {n: randn(*s).float() for n, s in ADAM_SHAPES.items()}
    init["alpha"] = (init["alpha"] * 0.01).float()  # small: the first steps push some past 0
    init["alpha"][0, 0] = 0.0  # sign(0) = 0: the L1 term leaves this element alone
    grads = {(n, k): randn(*s).float() for k in range(ADAM_STEPS) for n, s in ADAM_SHAPES.items()
             if (n, k) not in ADAM_MISSING}
    crossed = 0
    for run, (wd, lam) in ADAM_RUNS.items():
        ps = {n: t.clone().requires_grad_() for n, t in init.items()}
        opt = torch.optim.Adam(list(ps.values()), lr=ADAM_LR, betas=(0.9, 0.999), eps=1e-8,
                               weight_decay=wd, foreach=False)
        for n, t in init.items():
            c.save(f"{run}_init__{n}", t)
        for k in range(ADAM_STEPS):
            opt.zero_grad(set_to_none=True)
            for n, p in ps.items():
                if (n, k) in grads:
                    p.grad = grads[(n, k)].clone()
                    c.save(f"{run}_grad{k}__{n}", grads[(n, k)])
            if lam:  # SNL's penalty through autograd: alpha.grad += lam * sign(alpha)
                (lam * ps["alpha"].abs().sum()).backward()
            before = ps["alpha"].detach().clone()
            opt.step()
            crossed += int(((before * ps["alpha"].detach()) < 0).sum())
            for n, p in ps.items():
                c.save(f"{run}_step{k}__{n}", p)
                if p in opt.state:
                    c.save(f"{run}_exp_avg{k}__{n}", opt.state[p]["exp_avg"])
                    c.save(f"{run}_exp_avg_sq{k}__{n}", opt.state[p]["exp_avg_sq"])
    assert crossed > 0, "no alpha element crossed zero"
    return c.finish(dict(op="adam", lr=ADAM_LR, betas=[0.9, 0.999], eps=1e-8, steps=ADAM_STEPS,
                         runs={r: dict(weight_decay=wd, l1_lambda=lam, l1_tensor="alpha")
                               for r, (wd, lam) in ADAM_RUNS.items()},
                         missing_grads=sorted([n, k] for n, k in ADAM_MISSING),
                         note="torch.optim.Adam (foreach=False) in float32; a missing "
                              "grad<k> file means no loss gradient at step k"),
                    f"{crossed} alpha sign changes", compute_dtype="float32")



def randomise_model(model):
    """Random BN state, float32-exact parameters, Bernoulli(0.5) masks."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                C = mod.num_features
                mod.weight.copy_(torch.rand(C, dtype=DT) + 0.5)
                mod.bias.copy_(torch.rand(C, dtype=DT) * 0.4 - 0.2)
                mod.running_mean.copy_(torch.randn(C, dtype=DT) * 0.1)
                mod.running_var.copy_(torch.rand(C, dtype=DT) + 0.5)
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                v.copy_(r32(v))
        for _, m in model.masked_relus():
            m.mask.copy_(bernoulli(*m.mask.shape))


def case_network(root, name, model, n_taps, summary):
    c = Case(root, name)  # seeds before the model is built
    model = model()
    model.double()
    randomise_model(model)

    x = rand(2, 3, 32, 32)
    labels = torch.randint(0, 10, (2,))
    sd_before = {k: v.detach().clone() for k, v in model.state_dict().items()
                 if not k.endswith("num_batches_tracked")}
    relus = model.masked_relus()

    model.train().set_domain("clean")
    xg = x.clone().requires_grad_()
    logits, taps = model(xg, return_taps=True)
    loss = F.cross_entropy(logits, labels, reduction="mean")
    model.zero_grad(set_to_none=True)
    loss.backward()

    model.eval().set_domain("adv")
    with torch.no_grad():
        logits_eval_adv = model(x)

    c.save("x", x)
    c.save("labels", labels, np.int64)
    for k, v in sd_before.items():
        c.save(f"param__{k}", v)
    for i, (_, m) in enumerate(relus):
        c.save(f"mask__{i}", m.mask)
    c.save("logits", logits)
    c.save("loss", loss.reshape(1))
    grad_names = []
    for k, p in model.named_parameters():
        if p.grad is not None:
            c.save(f"grad__{k}", p.grad)
            grad_names.append(k)
        else:
            assert ".BN_a." in k, f"{k} got no gradient"
    c.save("dx", xg.grad)
    sd_after = model.state_dict()
    for k, v in sd_after.items():
        if ".BN_c.running_" in k:
            c.save(f"running_after__{k}", v)
        if ".BN_a.running_" in k:  # the adversarial BN must not have moved
            assert torch.equal(v, sd_before[k]), k
    c.save("logits_eval_adv", logits_eval_adv)
    assert len(taps) == n_taps
    for j, t in enumerate(taps, start=1):
        c.save(f"taps__{j}", t)

    meta = dict(
        model=name, input="raw pixels [0,1], normalised inside the model",
        cifar_mean=list(tm.CIFAR_MEAN), cifar_std=list(tm.CIFAR_STD),
        bn_eps=1e-5, bn_momentum=0.1, widths=model.widths,
        train_pass="train mode, domain clean (BN_c), loss = mean cross-entropy, backward, no optimiser step",
        eval_pass="eval mode, domain adv (BN_a, running stats), same x -> logits_eval_adv",
        masked_relu="y = relu(m*z) + (1-m)*z, m [C,H,W] ~ Bernoulli(0.5)",
        masked_relu_order=[dict(index=i, module=n, shape=list(m.mask.shape))
                           for i, (n, m) in enumerate(relus)],
        state_dict=list(sd_before.keys()), grads=grad_names,
        loss_value=loss.item())
    return c.finish(meta, summary + f" loss={loss.item():.6f}")


DISTILL_MODES = ["rslad", "rslad+ce", "rslad+attn", "rslad+attn+augattn", "rslad+attn+augattn+ce",
                 "rslad+attn+augattn+advattn", "rslad+attn+augattn+advattn+ce", "pgd-at",
                 "natural"]
DISTILL_GRADS = ["conv1.weight", "layer2.0.shortcut.1.BN_c.weight", "layer4.1.bn2.BN_a.weight",
                 "linear.weight"]


def forward_with_relus(model, x):
    """(logits, taps, masked-ReLU outputs in forward order) of one pass."""
    acts = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: acts.append(o))
             for _, m in model.masked_relus()]
    logits, taps = model(x, return_taps=True)
    for hk in hooks:
        hk.remove()
    return logits, taps, acts


def case_distill(root):
    name = "distill_resnet18_w00625"
    c = Case(root, name)
    student, teacher = tm.ResNet18(0.0625).double(), tm.ResNet18(0.0625).double()
    randomise_model(student)
    randomise_model(teacher)
    for _, m in teacher.masked_relus():
        m.mask.fill_(1.0)
    B, h = 5, 3
    x = rand(B, 3, 32, 32)
    aug = rand(h, 3, 32, 32)
    eps = 8.0 / 255.0
    x_adv = r32(torch.clamp(x[h:] + rand(B - h, 3, 32, 32, lo=-eps, hi=eps), 0.0, 1.0))
    labels = torch.randint(0, 10, (B,))
    g, a, b, T = 0.3, 0.6, 800.0, 3.0
    sd_s = {k: v.detach().clone() for k, v in student.state_dict().items()
            if not k.endswith("num_batches_tracked")}
    sd_t = {k: v.detach().clone() for k, v in teacher.state_dict().items()
            if not k.endswith("num_batches_tracked")}

    def kl(s, t):
        return F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T

    def at(fs, ft):
        return sum((attention_map(s) - attention_map(t)).pow(2).mean() for s, t in zip(fs, ft))

    teacher.eval()
    with torch.no_grad():
        t, taps_t, relus_t = forward_with_relus(teacher.set_domain("clean"), x)
        _, taps_ta = teacher.set_domain("clean")(aug, return_taps=True)
        _, taps_tadv = teacher.set_domain("adv")(x_adv, return_taps=True)
    taps_tn = [f[:h] for f in taps_t]
    params = dict(student.named_parameters())
    y1, y2 = labels[:h], labels[h:]
    losses, grads = {}, {}
    for mode in DISTILL_MODES:
        student.load_state_dict(sd_s, strict=False)  # undo the running-stat updates
        student.train()
        if mode == "natural":
            z, s_taps, _ = forward_with_relus(student.set_domain("clean"), x)
            loss = g * F.cross_entropy(z, labels) + a * kl(z, t) + b * at(s_taps, taps_t)
        else:
            z_n, s_n, relus_s = forward_with_relus(student.set_domain("clean"), x[:h])
            z_a, s_a = student.set_domain("clean")(aug, return_taps=True)
            z_adv, s_adv = student.set_domain("adv")(x_adv, return_taps=True)
            ce3 = (F.cross_entropy(z_n, y1) + F.cross_entropy(z_a, y1)
                   + F.cross_entropy(z_adv, y2)) / 3
            kl3 = (kl(z_n, t[:h]) + kl(z_a, t[:h]) + kl(z_adv, t[h:])) / 3
            at_n, at_a, at_adv = at(s_n, taps_tn), at(s_a, taps_ta), at(s_adv, taps_tadv)
            loss = {
                "rslad": kl3,
                "rslad+ce": g * ce3 + a * kl3,
                "rslad+attn": kl3 + b * at_n,
                "rslad+attn+augattn": kl3 + b * (at_n + at_a) / 2,
                "rslad+attn+augattn+ce": g * ce3 + a * kl3 + b * (at_n + at_a) / 2,
                "rslad+attn+augattn+advattn": kl3 + b * (at_n + at_a + at_adv) / 3,
                "rslad+attn+augattn+advattn+ce": g * ce3 + a * kl3 + b * (at_n + at_a + at_adv) / 3,
                "pgd-at": ce3,
            }[mode]
            if mode == "rslad+ce":
                scores = [(at_ - as_).abs().sum(0) for at_, as_ in
                          zip((r[:h] for r in relus_t), relus_s)]
        gs = torch.autograd.grad(loss, [params[p] for p in DISTILL_GRADS], allow_unused=True)
        losses[mode] = loss.item()
        grads[mode] = [torch.zeros_like(params[p]) if gr is None else gr
                       for p, gr in zip(DISTILL_GRADS, gs)]

    for k, v in sd_s.items():
        c.save(f"param_s__{k}", v)
    for k, v in sd_t.items():
        c.save(f"param_t__{k}", v)
    for i, (_, m) in enumerate(student.masked_relus()):
        c.save(f"mask_s__{i}", m.mask)
    for k, v in dict(x=x, aug=aug, x_adv=x_adv).items():
        c.save(k, v)
    c.save("labels", labels, np.int64)
    c.save("weights", torch.tensor([g, a, b, T], dtype=DT))
    for mode in DISTILL_MODES:
        tag = mode.replace("+", "_")
        c.save(f"loss__{tag}", torch.tensor([losses[mode]], dtype=DT))
        for p, gr in zip(DISTILL_GRADS, grads[mode]):
            c.save(f"grad__{tag}__{p}", gr)
    for i, sc in enumerate(scores):
        c.save(f"scores__{i}", sc.detach())
    meta = dict(model="ResNet18 w0.0625", batch=B, h1=h, weights=dict(gamma=g, alpha=a, beta=b, T=T),
                modes=DISTILL_MODES, grad_params=DISTILL_GRADS, losses=losses,
                scores="sum over clean H1 of |A^T - A^S| (student train pass, BN_c)")
    return c.finish(meta, " ".join(f"{m}={v:.4f}" for m, v in losses.items()))


def main():
    cases = {
        "conv_k3s1p1": lambda r: case_conv(r, "conv_k3s1p1", (2, 3, 7, 7), (4, 3, 3, 3), 1, 1),
        "conv_k3s2p1": lambda r: case_conv(r, "conv_k3s2p1", (2, 4, 9, 9), (5, 4, 3, 3), 2, 1),
        "conv_k1s2p0": lambda r: case_conv(r, "conv_k1s2p0", (2, 4, 8, 8), (6, 4, 1, 1), 2, 0),
        "conv_k1s1p0": lambda r: case_conv(r, "conv_k1s1p0", (3, 5, 6, 6), (4, 5, 1, 1), 1, 0),
        "conv_k3s2p1_even": lambda r: case_conv(r, "conv_k3s2p1_even", (2, 3, 8, 8),
                                                (4, 3, 3, 3), 2, 1),
        "bn_relu_train": lambda r: case_bn(r, "bn_relu_train", True, "bernoulli", False),
        "bn_train": lambda r: case_bn(r, "bn_train", True, "none", False),
        "bn_add_relu_train": lambda r: case_bn(r, "bn_add_relu_train", True, "bernoulli", True),
        "bn_relu_eval": lambda r: case_bn(r, "bn_relu_eval", False, "bernoulli", False),
        "bn_relu_train_allones": lambda r: case_bn(r, "bn_relu_train_allones", True, "ones",
                                                   False),
        "linear": case_linear,
        "cross_entropy": case_cross_entropy,
        "kl_t4": case_kl,
        "attention": case_attention,
        "jsd": case_jsd,
        "soft_relu": case_soft_relu,
        "adam": case_adam,
        "resnet18_w0125": lambda r: case_network(r, "resnet18_w0125",
                                                 lambda: tm.ResNet18(0.125), 4,
                                                 "ResNet18 w0.125 x[2,3,32,32]"),
        "wrn_tiny": lambda r: case_network(r, "wrn_tiny",
                                           lambda: tm.WideResNet(10, (4, 8, 16, 32)), 3,
                                           "WRN-10 widths [4,8,16,32] x[2,3,32,32]"),
        "distill_resnet18_w00625": case_distill,
    }
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default tests/fixtures/golden)")
    ap.add_argument("cases", nargs="*", metavar="CASE",
                    help="cases to (re)write, default all: " + " ".join(cases))
    args = ap.parse_args()
    unknown = [c for c in args.cases if c not in cases]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {' '.join(cases)}")
    root = os.path.normpath(args.out)
    os.makedirs(root, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    total = 0
    for name in args.cases or cases:
        total += cases[name](root)
    print(f"total {total / 1024:.1f} KiB in {root}")


if __name__ == "__main__":
    main()
