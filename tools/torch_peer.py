#!/usr/bin/env python3
"""PyTorch throughput peer for the rlnet benches.

    python3 tools/torch_peer.py --device cpu|cuda --model resnet18|wrn22-8 \
        --width-mult 1.0 --batch 64 --mode plain|teacher --iters 20 --warmup 3 \
        [--threads N] [--bf16] [--channels-last] [--compile] [--json]
    python3 tools/torch_peer.py --items FILE|-

--items: per-kernel and per-step items from a JSON spec written by `rlnet bench
--compare-torch` (conv fwd / dgrad / wgrad, dual BN + masked ReLU fwd/bwd, the PGD update,
the stage-1 step), each in eager/compiled, f32/bf16, NCHW/channels_last variants; one JSON
object on stdout. See tools/torch_peer_items.py for the format and semantics.

Models come from tools/torch_models.py (the same code make_golden.py uses): CIFAR
ResNet18 / WRN-22-8 with dual BN and masked ReLUs (all-ones masks, so the mask
arithmetic is paid for), SGD(lr 0.05, momentum 0.9, weight decay 5e-4).

--mode plain    one step = forward (BN_c, train) on random 32x32 inputs in [0,1],
                mean cross-entropy, backward, SGD step.
--mode teacher  the RLNet stage-1 step without the AugMix term: the batch is split in
                halves; PGD-7 (eps 8/255, step 2/255, one uniform random start, summed CE,
                eval mode with BN_a, parameters frozen) on the second half; then
                clean half -> BN_c (train), adversarial half -> BN_a (train),
                loss = mean of the two CEs, backward, SGD step.

Timing: wall clock per step (torch.cuda.synchronize() around each step on cuda), median
over --iters steps after --warmup untimed steps; images/s = batch / median step time.
"""

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

EPS = 8.0 / 255.0
STEP = 2.0 / 255.0
PGD_ITERS = 7
NOTE_TEACHER = "teacher mode excludes the AugMix/JSD term of the RLNet stage-1 loss"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def set_trainable(model, flag):
    for p in model.parameters():
        p.requires_grad_(flag)


def make_stage1_step(model, net, opt, amp, x, y, pgd_steps=PGD_ITERS, x_aug=None):
    """The RLNet stage-1 step as a closure (teacher mode here, stage1_step in items mode).

    x, y: the batch; its first half is clean, its second half is attacked with PGD-pgd_steps
    (eps 8/255, step 2/255, one uniform random start, summed CE, eval mode with BN_a,
    parameters frozen). x_aug (optional): the AugMix view of the clean half, one more
    BN_c (train) forward pass. loss = mean of the 2 (or 3) CEs; backward; SGD step.
    `net` is what is called (the model or its torch.compile wrapper); `amp` a context factory.
    """
    half = x.shape[0] // 2

    def pgd(x0, yt):
        model.eval()
        model.set_domain("adv")
        set_trainable(model, False)
        xa = (x0 + torch.empty_like(x0).uniform_(-EPS, EPS)).clamp_(0.0, 1.0)
        for _ in range(pgd_steps):
            xa.requires_grad_(True)
            with amp():
                loss = F.cross_entropy(net(xa), yt, reduction="sum")
            (g,) = torch.autograd.grad(loss, xa)
            with torch.no_grad():
                xa = xa + STEP * g.sign()
                xa = torch.min(torch.max(xa, x0 - EPS), x0 + EPS).clamp_(0.0, 1.0)
        set_trainable(model, True)
        return xa.detach()

    def stage1_step():
        xc, yc = x[:half], y[:half]
        x0, ya = x[half:], y[half:]
        xa = pgd(x0, ya)
        model.train()
        model.set_domain("clean")
        with amp():
            losses = [F.cross_entropy(net(xc), yc)]
            if x_aug is not None:
                losses.append(F.cross_entropy(net(x_aug), yc))
        model.set_domain("adv")
        with amp():
            losses.append(F.cross_entropy(net(xa), ya))
        loss = sum(losses) / len(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.set_domain("clean")
        return loss

    return stage1_step


def main():
    ap = argparse.ArgumentParser(description="PyTorch throughput peer for rlnet")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--model", choices=["resnet18", "wrn22-8"], default="resnet18")
    ap.add_argument("--width-mult", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mode", choices=["plain", "teacher"], default="plain")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--bf16", action="store_true", help="torch.autocast(bfloat16)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--items", metavar="FILE",
                    help="items mode (rlnet bench --compare-torch): JSON spec file or '-'")
    args = ap.parse_args()

    if args.items is not None:
        import torch_peer_items  # noqa: PLC0415 -- imports this module back

        sys.exit(torch_peer_items.run(args.items))

    if args.mode == "teacher" and args.batch < 2:
        ap.error("--mode teacher needs --batch >= 2")
    if args.iters < 1:
        ap.error("--iters must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        log("error: --device cuda but torch.cuda.is_available() is False")
        sys.exit(2)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    model = tm.build(args.model, args.width_mult).to(dev)
    mem_fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    net = model  # what the steps call; may become the compiled wrapper
    compiled = False
    if args.compile:
        try:
            net = torch.compile(model)
            compiled = True
        except Exception as e:  # noqa: BLE001
            log(f"note: torch.compile unavailable ({type(e).__name__}: {e}); running eager")

    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.bf16 else nullcontext

    B = args.batch
    x = torch.rand(B, 3, 32, 32, device=dev).contiguous(memory_format=mem_fmt)
    y = torch.randint(0, 10, (B,), device=dev)
    half = B // 2

    def plain_step():
        model.train()
        model.set_domain("clean")
        with amp():
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step = plain_step if args.mode == "plain" else make_stage1_step(model, net, opt, amp, x, y)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # Warm-up (also where torch.compile actually compiles; fall back to eager if it fails).
    for i in range(max(args.warmup, 1 if compiled else 0)):
        try:
            step()
        except Exception as e:  # noqa: BLE001
            if not compiled:
                raise
            log(f"note: torch.compile failed on this machine ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); falling back to eager")
            return rerun_eager()
    sync()

    times = []
    loss = None
    for _ in range(args.iters):
        sync()
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    if loss is not None and not torch.isfinite(loss.detach().float()).item():
        log("warning: non-finite loss")

    med = statistics.median(times)
    res = {
        "device": args.device if dev.type == "cpu" else f"cuda:{torch.cuda.get_device_name(dev)}",
        "model": args.model,
        "width_mult": args.width_mult,
        "batch": B,
        "mode": args.mode,
        "dtype": "bfloat16" if args.bf16 else "float32",
        "channels_last": bool(args.channels_last),
        "compiled": compiled,
        "threads": torch.get_num_threads(),
        "ms_per_step": med * 1e3,
        "images_per_sec": B / med,
        "torch_version": torch.__version__,
    }
    if args.json:
        print(json.dumps(res))
        if args.mode == "teacher":
            log("note: " + NOTE_TEACHER)
    else:
        print(f"torch {res['torch_version']}  device {res['device']}  threads {res['threads']}")
        print(f"model {args.model} x{args.width_mult}  batch {B}  mode {args.mode}  dtype {res['dtype']}"
              f"  channels_last {res['channels_last']}  compiled {compiled}")
        print(f"steps {args.iters} (+{args.warmup} warm-up): median {res['ms_per_step']:.1f} ms/step"
              f"  min {min(times) * 1e3:.1f}  max {max(times) * 1e3:.1f}")
        print(f"{res['images_per_sec']:.1f} images/s")
        if args.mode == "teacher":
            print("note: " + NOTE_TEACHER + f"; PGD-{PGD_ITERS} on {B - half} of {B} images per step")


def rerun_eager():
    """Re-exec without --compile after a compile failure (keeps the timing code simple)."""
    argv = [a for a in sys.argv if a != "--compile"]
    os.execv(sys.executable, [sys.executable] + argv)


if __name__ == "__main__":
    main()
