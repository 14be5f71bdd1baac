"""Items mode of tools/torch_peer.py: the PyTorch side of `rlnet bench --compare-torch`.

    python3 tools/torch_peer.py --items FILE        (FILE may be '-' = stdin)

FILE is one JSON object written by `rlnet bench`:
    {"device": "cpu"|"cuda", "threads": N|null, "warmup": 2, "reps": 5, "min_time_s": 0.0,
     "variants": ["eager-f32", "eager-bf16-cl", "compile-f32", ...],
     "items": [{"name": ..., "kind": ..., <shape fields>}, ...]}

Variant `{eager|compile}-{f32|bf16}[-cl]`: compile = torch.compile (default mode) of the
timed function (or of the model for stage1_step), a fresh dynamo cache per (item, variant);
bf16 = torch.autocast(device, bfloat16) around the work; -cl = channels_last for the 4-D
activations and conv weights.

Kinds (the same work rlnet times):
  conv_fwd         y = conv2d(x, w, stride, pad), no bias.
  conv_bwd_data    dx = aten.convolution_backward(dy, x, w, output_mask=[T, F, F]).
  conv_bwd_weight  dw = aten.convolution_backward(dy, x, w, output_mask=[F, T, F]).
                   bf16: x, w (and dy) are handed over in bf16, as inside an autocast network
                   (convolution_backward is not an autocast op; autocast's casts not timed).
  dual_bn_relu_fwd [clean half | adversarial half], each half through its own BatchNorm2d
                   (train mode, momentum 0.1, eps 1e-5), then y = relu(m*z) + (1-m)*z with
                   an alternating {0,1} mask [c,h,w]. bf16: the input is bf16 (as the conv
                   output under autocast would be); BN runs as autocast leaves it.
  dual_bn_relu_bwd dx (whole batch) and dgamma/dbeta of both sets from dy. Eager: the
                   forward graph is built once, torch.autograd.grad(retain_graph=True) is
                   timed. Compiled: time(compiled forward + grad) - time(compiled forward).
  pgd_update       clamp(min(max(x + 2/255*sign(g), x0 - 8/255), x0 + 8/255), 0, 1), f32
                   tensors in every variant (autocast does not touch these ops).
  stage1_step      tools/torch_peer.py's stage-1 step (make_stage1_step), with an AugMix
                   view of the clean half as a third CE term when "augmix" is true.
  anything else    {"name": ..., "skipped": "no PyTorch counterpart"}.

Timing: median over `reps` timed repetitions (after `warmup` untimed ones; compiled
variants always get at least one) of the per-call time in ms. cuda: CUDA events around
each repetition, cudnn.benchmark on; with min_time_s > 0 each repetition makes enough
calls that all reps together take at least min_time_s (calls_per_rep in the entry). cpu:
perf_counter; with min_time_s > 0, repetitions are added until min_time_s is reached.

Output: one JSON object on stdout {"torch_version", "device", "threads", "results": [...]},
one entry per (item, variant): {"name", "variant", "ms", "reps", ["calls_per_rep"], ["note"]}
or {"name", "variant", "error": "one line"}; progress on stderr. A malformed top level
exits with status 2.
"""

import json
import math
import re
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_models as tm
import torch_peer as tp

log = tp.log

VARIANT_RE = re.compile(r"^(eager|compile)-(f32|bf16)(-cl)?$")
CONV_KINDS = ("conv_fwd", "conv_bwd_data", "conv_bwd_weight")
MAX_CALLS_PER_REP = 10000
MAX_CPU_REPS = 1000


def one_line(e):
    s = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {s[0] if s else ''}".strip()
    return msg[:400]


class Variant:
    def __init__(self, s):
        m = VARIANT_RE.match(s) if isinstance(s, str) else None
        if not m:
            raise ValueError(f"bad variant {s!r} (want {{eager|compile}}-{{f32|bf16}}[-cl])")
        self.name = s
        self.compile = m.group(1) == "compile"
        self.bf16 = m.group(2) == "bf16"
        self.cl = m.group(3) is not None

    def amp(self, dev):
        if self.bf16:
            return lambda: torch.autocast(dev.type, dtype=torch.bfloat16)
        return nullcontext

    def fmt(self, t):
        """4-D tensor in this variant's memory format."""
        return t.contiguous(memory_format=torch.channels_last if self.cl else torch.contiguous_format)

    def maybe_compile(self, fn):
        return torch.compile(fn) if self.compile else fn


# --------------------------------------------------------------------------- timing


class Timer:
    def __init__(self, dev, warmup, reps, min_time_s):
        self.dev = dev
        self.warmup = warmup
        self.reps = reps
        self.min_time_s = min_time_s

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def _time_calls(self, fn, calls):
        """Seconds per call over `calls` back-to-back calls."""
        if self.dev.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / calls
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls

    def measure(self, fn, compiled=False):
        """Returns (median ms per call, reps, calls_per_rep)."""
        for _ in range(max(self.warmup, 1 if compiled else 0)):
            fn()
        self.sync()
        calls = 1
        if self.dev.type == "cuda" and self.min_time_s > 0:
            t1 = max(self._time_calls(fn, 1), 1e-7)
            calls = min(MAX_CALLS_PER_REP, max(1, math.ceil(self.min_time_s / (self.reps * t1))))
        times = [self._time_calls(fn, calls) for _ in range(self.reps)]
        if self.dev.type == "cpu" and self.min_time_s > 0:
            while sum(times) < self.min_time_s and len(times) < MAX_CPU_REPS:
                times.append(self._time_calls(fn, 1))
        return statistics.median(times) * 1e3, len(times), calls


# --------------------------------------------------------------------------- items


def need_int(item, *fields, minimum=1):
    vals = []
    for f in fields:
        v = item.get(f)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"field {f!r} must be an integer >= {minimum} (got {v!r})")
        vals.append(v)
    return vals


def bench_conv(item, var, dev, timer):
    n, c_in, h, w, c_out, k, stride = need_int(item, "n", "c_in", "h", "w", "c_out", "k", "stride")
    (pad,) = need_int(item, "pad", minimum=0)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"empty conv output {ho}x{wo}")
    kind = item["kind"]
    note = None
    # bf16: the tensors are handed over in bf16, as inside an autocast network (activations
    # are bf16 op outputs); convolution_backward is not an autocast op, so it needs them so.
    dt = torch.bfloat16 if var.bf16 else torch.float32
    if var.bf16:
        note = ("bf16: x, w given in bf16 (autocast's casts not timed)" if kind == "conv_fwd" else
                "bf16: x, w, dy given in bf16 (convolution_backward is not an autocast op)")
    x = var.fmt(torch.randn(n, c_in, h, w, device=dev, dtype=dt))
    wt = var.fmt(torch.randn(c_out, c_in, k, k, device=dev, dtype=dt) * (2.0 / (c_in * k * k)) ** 0.5)
    dy = var.fmt(torch.randn(n, c_out, ho, wo, device=dev, dtype=dt))
    amp = var.amp(dev)

    if kind == "conv_fwd":
        def work(x, wt):
            with amp():
                return F.conv2d(x, wt, None, stride, pad)
        args = (x, wt)
    else:
        mask = [True, False, False] if kind == "conv_bwd_data" else [False, True, False]

        def work(dy, x, wt):
            with amp():
                return torch.ops.aten.convolution_backward(
                    dy, x, wt, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], 1, mask)
        args = (dy, x, wt)

    f = var.maybe_compile(work)
    with torch.no_grad():
        ms, reps, calls = timer.measure(lambda: f(*args), var.compile)
    return ms, reps, calls, note


class DualBNReLU(nn.Module):
    """(clean half, adversarial half) -> BN_c / BN_a (train) -> masked ReLU, per half.

    The halves stay separate tensors (views of one batch in forward), so no concatenation
    or slice-backward copy is timed that a one-buffer implementation would not do."""

    def __init__(self, c, h, w):
        super().__init__()
        self.bn_c = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        self.bn_a = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        # Alternating pattern: half of the [c,h,w] elements keep their ReLU.
        self.register_buffer("mask", (torch.arange(c * h * w) % 2).float().view(c, h, w))

    def forward(self, xc, xa):
        out = []
        for bn, x in ((self.bn_c, xc), (self.bn_a, xa)):
            z = bn(x)
            m = self.mask.to(z.dtype)
            out.append(F.relu(m * z) + (1.0 - m) * z)
        return out


def bench_bn_relu(item, var, dev, timer):
    n, c, h, w = need_int(item, "n", "c", "h", "w")
    if n < 2:
        raise ValueError("n must be >= 2 (two halves)")
    kind = item["kind"]
    half = n // 2
    mod = DualBNReLU(c, h, w).to(dev).train()
    dt = torch.bfloat16 if var.bf16 else torch.float32
    note = "bf16: bf16 input (the conv output under autocast), BN as autocast leaves it" if var.bf16 else None
    x = var.fmt(torch.randn(n, c, h, w, device=dev, dtype=dt))
    amp = var.amp(dev)

    def fwd(xc, xa):
        with amp():
            return mod(xc, xa)

    f = var.maybe_compile(fwd)
    if kind == "dual_bn_relu_fwd":
        with torch.no_grad():
            ms, reps, calls = timer.measure(lambda: f(x[:half], x[half:]), var.compile)
        return ms, reps, calls, note

    # dx of both halves (separate leaves, views of one batch buffer) + dgamma/dbeta of both sets.
    xc = x[:half].detach().requires_grad_(True)
    xa = x[half:].detach().requires_grad_(True)
    dy = var.fmt(torch.randn(n, c, h, w, device=dev, dtype=dt))
    dys = [dy[:half], dy[half:]]
    inputs = [xc, xa, mod.bn_c.weight, mod.bn_c.bias, mod.bn_a.weight, mod.bn_a.bias]
    if not var.compile:
        ys = f(xc, xa)
        dys = [d.to(yy.dtype) for d, yy in zip(dys, ys)]
        ms, reps, calls = timer.measure(
            lambda: torch.autograd.grad(ys, inputs, dys, retain_graph=True))
        return ms, reps, calls, note

    def fwd_grad():
        ys = f(xc, xa)
        return torch.autograd.grad(ys, inputs, [d.to(yy.dtype) for d, yy in zip(dys, ys)])

    ms_fg, reps, calls = timer.measure(fwd_grad, True)
    ms_f, _, _ = timer.measure(lambda: f(xc, xa), True)
    extra = (f"compiled: time(forward+grad) {ms_fg:.4f} ms - time(forward) {ms_f:.4f} ms "
             "(forward with autograd recording)")
    return ms_fg - ms_f, reps, calls, (note + "; " + extra) if note else extra


def bench_pgd_update(item, var, dev, timer):
    n, c, h, w = need_int(item, "n", "c", "h", "w")
    x0 = var.fmt(torch.rand(n, c, h, w, device=dev))
    x = var.fmt((x0 + torch.empty_like(x0).uniform_(-tp.EPS, tp.EPS)).clamp(0.0, 1.0))
    g = var.fmt(torch.randn(n, c, h, w, device=dev))
    amp = var.amp(dev)

    def work(x, g, x0):
        with amp():
            xn = x + tp.STEP * torch.sign(g)
            return torch.min(torch.max(xn, x0 - tp.EPS), x0 + tp.EPS).clamp(0.0, 1.0)

    f = var.maybe_compile(work)
    with torch.no_grad():
        ms, reps, calls = timer.measure(lambda: f(x, g, x0), var.compile)
    note = "f32 tensors (autocast does not touch these ops)" if var.bf16 else None
    return ms, reps, calls, note


def bench_stage1(item, var, dev, timer):
    model_name = item.get("model", "resnet18")
    if model_name not in ("resnet18", "wrn22-8", "wrn22_8"):
        raise ValueError(f"unknown model {model_name!r}")
    wm = item.get("width_mult", 1.0)
    if isinstance(wm, bool) or not isinstance(wm, (int, float)) or wm <= 0:
        raise ValueError(f"field 'width_mult' must be a positive number (got {wm!r})")
    (batch,) = need_int(item, "batch", minimum=2)
    (pgd_steps,) = need_int(item, "pgd_steps", minimum=0)
    augmix = bool(item.get("augmix", False))

    torch.manual_seed(0)
    model = tm.build(model_name, float(wm)).to(dev)
    if var.cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    net = torch.compile(model) if var.compile else model
    x = var.fmt(torch.rand(batch, 3, 32, 32, device=dev))
    y = torch.randint(0, 10, (batch,), device=dev)
    x_aug = var.fmt(torch.rand(batch // 2, 3, 32, 32, device=dev)) if augmix else None
    step = tp.make_stage1_step(model, net, opt, var.amp(dev), x, y, pgd_steps, x_aug)
    ms, reps, calls = timer.measure(step, var.compile)
    note = (f"{batch // 2} clean + {batch - batch // 2} PGD-{pgd_steps}"
            + (f" + {batch // 2} AugMix view (CE only, no JSD term)" if augmix else ""))
    return ms, reps, calls, note


KINDS = {
    "conv_fwd": bench_conv,
    "conv_bwd_data": bench_conv,
    "conv_bwd_weight": bench_conv,
    "dual_bn_relu_fwd": bench_bn_relu,
    "dual_bn_relu_bwd": bench_bn_relu,
    "pgd_update": bench_pgd_update,
    "stage1_step": bench_stage1,
}


# --------------------------------------------------------------------------- driver


def load_spec(path):
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e}")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path} is not JSON: {e}")
    if not isinstance(spec, dict):
        raise SystemExit("error: the items file must hold one JSON object")
    if not isinstance(spec.get("items"), list):
        raise SystemExit("error: the items file has no \"items\" list")
    return spec


def run(path):
    try:
        spec = load_spec(path)
        dev_name = spec.get("device", "cpu")
        if dev_name not in ("cpu", "cuda"):
            raise SystemExit(f"error: device must be \"cpu\" or \"cuda\" (got {dev_name!r})")
        if dev_name == "cuda" and not torch.cuda.is_available():
            raise SystemExit("error: device cuda but torch.cuda.is_available() is False")
        threads = spec.get("threads")
        warmup = spec.get("warmup", 2)
        reps = spec.get("reps", 5)
        min_time_s = spec.get("min_time_s", 0.0) or 0.0
        variants = spec.get("variants", ["eager-f32"])
        for k, v, lo in (("warmup", warmup, 0), ("reps", reps, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise SystemExit(f"error: {k} must be an integer >= {lo} (got {v!r})")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise SystemExit(f"error: threads must be null or an integer >= 1 (got {threads!r})")
        if isinstance(min_time_s, bool) or not isinstance(min_time_s, (int, float)) or min_time_s < 0:
            raise SystemExit(f"error: min_time_s must be a number >= 0 (got {min_time_s!r})")
        if not isinstance(variants, list) or not variants:
            raise SystemExit("error: variants must be a non-empty list")
    except SystemExit as e:
        log(str(e.code))
        return 2

    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(dev_name)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    timer = Timer(dev, warmup, reps, float(min_time_s))

    parsed = []
    for v in variants:
        try:
            parsed.append((str(v), Variant(v), None))
        except ValueError as e:
            parsed.append((str(v), None, str(e)))

    results = []
    for idx, item in enumerate(spec["items"]):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            name = f"item[{idx}]"
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            results.append({"name": name, "error": "malformed item: want an object with a string \"kind\""})
            log(f"{name}: malformed item")
            continue
        kind = item["kind"]
        bench = KINDS.get(kind)
        if bench is None:
            results.append({"name": name, "skipped": "no PyTorch counterpart"})
            log(f"{name}: skipped (no PyTorch counterpart for kind {kind!r})")
            continue
        for vname, var, verr in parsed:
            entry = {"name": name, "variant": vname}
            if var is None:
                entry["error"] = verr
            else:
                try:
                    if var.compile:
                        torch._dynamo.reset()  # fresh cache: no recompile limit across items
                    ms, nreps, calls, note = bench(item, var, dev, timer)
                    entry["ms"] = round(ms, 6)
                    entry["reps"] = nreps
                    if calls > 1:
                        entry["calls_per_rep"] = calls
                    if note:
                        entry["note"] = note
                except Exception as e:  # noqa: BLE001 -- one bad item never ends the run
                    entry["error"] = one_line(e)
                finally:
                    if dev.type == "cuda":
                        try:
                            torch.cuda.synchronize()
                            torch.cuda.empty_cache()
                        except Exception:  # noqa: BLE001 -- reported by the item's own error
                            pass
            results.append(entry)
            log(f"{name} [{vname}]: " + (f"{entry['ms']:.4f} ms" if "ms" in entry else f"error: {entry['error']}"))

    out = {
        "torch_version": torch.__version__,
        "device": "cpu" if dev.type == "cpu" else f"cuda:{torch.cuda.get_device_name(dev)}",
        "threads": torch.get_num_threads(),
        "results": results,
    }
    print(json.dumps(out))
    return 0
