//! The GPU side of the graph's ops: each function runs one op's forward or backward through
//! the CUDA launchers on tensors that live on the GPU. A launch failure inside a step is a
//! driver or hardware fault, not bad input, so it stops the run with the driver's message.

use crate::device::buffer::DeviceBuffer;
use crate::device::cuda::CudaDevice;
use crate::device::launch::bn_act::{self as gbn, BnGradsGpu, BnParams};
use crate::device::launch::conv2d::{self as gconv, ConvVersion};
use crate::device::launch::linear::{self as glin, LinearShape};
use crate::device::launch::loss::{self as gloss, AtShape};
use crate::device::launch::{elementwise as gel, optim as gopt, soft_relu as gsr};
use crate::error::Result;
use crate::geom::{BnGeom, ConvGeom};
use crate::optim::{AdamStep, SgdConfig};
use crate::tensor::Tensor;

/// Stops on a GPU fault with its message (see the module comment).
pub(crate) fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("GPU failure: {e}"))
}

/// Zeros, for state that accumulates (optimiser moments).
pub(crate) fn zeros(d: &CudaDevice, shape: &[usize]) -> Tensor {
    Tensor::from_gpu(shape, ok(d.zeros(shape.iter().product())))
}

/// A tensor for a kernel to write in full: no zeroing pass (the emulator poisons it, so the
/// parity tests catch a kernel that leaves part of it unwritten).
fn output(d: &CudaDevice, shape: &[usize]) -> Tensor {
    Tensor::from_gpu(shape, ok(d.alloc(shape.iter().product())))
}

pub(crate) fn upload(d: &CudaDevice, v: &[f32]) -> DeviceBuffer<f32> {
    ok(d.upload(v))
}

/// The convolution version the graph uses: exact f32 (v1) until the tensor-core kernels have
/// been checked on hardware.
const CONV: ConvVersion = ConvVersion::V1;

pub(crate) fn conv2d(d: &CudaDevice, g: &ConvGeom, x: &Tensor, w: &Tensor) -> Tensor {
    let mut y = output(d, &[g.n, g.c_out, g.h_out(), g.w_out()]);
    ok(gconv::forward(d, g, x.gpu(), w.gpu(), y.gpu_mut(), CONV));
    y
}

pub(crate) fn conv2d_backward_data(
    d: &CudaDevice,
    g: &ConvGeom,
    w: &Tensor,
    dy: &Tensor,
) -> Tensor {
    let mut dx = output(d, &[g.n, g.c_in, g.h, g.w]);
    ok(gconv::backward_data(
        d,
        g,
        w.gpu(),
        dy.gpu(),
        dx.gpu_mut(),
        CONV,
    ));
    dx
}

pub(crate) fn conv2d_backward_weight(
    d: &CudaDevice,
    g: &ConvGeom,
    x: &Tensor,
    dy: &Tensor,
) -> Tensor {
    let mut dw = output(d, &[g.c_out, g.c_in, g.k, g.k]);
    ok(gconv::backward_weight(
        d,
        g,
        x.gpu(),
        dy.gpu(),
        dw.gpu_mut(),
        CONV,
    ));
    dw
}

/// Train-mode batch statistics: (mean, invstd, unbiased variance).
pub(crate) fn bn_stats(
    d: &CudaDevice,
    g: &BnGeom,
    x: &Tensor,
    eps: f64,
) -> (Tensor, Tensor, Tensor) {
    let (mut m, mut i, mut v) = (output(d, &[g.c]), output(d, &[g.c]), output(d, &[g.c]));
    ok(gbn::stats(
        d,
        g,
        x.gpu(),
        eps as f32,
        m.gpu_mut(),
        i.gpu_mut(),
        v.gpu_mut(),
    ));
    (m, i, v)
}

pub(crate) fn bn_eval_invstd(d: &CudaDevice, running_var: &Tensor, eps: f64) -> Tensor {
    let mut i = output(d, running_var.shape());
    ok(gbn::eval_invstd(
        d,
        running_var.gpu(),
        eps as f32,
        i.gpu_mut(),
    ));
    i
}

/// The tensors of one fused BN application.
pub(crate) struct BnTensors<'a> {
    pub mean: &'a Tensor,
    pub invstd: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub mask: Option<&'a Tensor>,
    pub relu: bool,
}

impl BnTensors<'_> {
    fn params(&self) -> BnParams<'_> {
        BnParams {
            mean: self.mean.gpu(),
            invstd: self.invstd.gpu(),
            gamma: self.gamma.gpu(),
            beta: self.beta.gpu(),
            mask: self.mask.map(|m| m.gpu()),
            relu: self.relu,
        }
    }
}

pub(crate) fn bn_forward(
    d: &CudaDevice,
    g: &BnGeom,
    x: &Tensor,
    residual: Option<&Tensor>,
    t: &BnTensors<'_>,
) -> Tensor {
    let mut y = output(d, x.shape());
    ok(gbn::forward(
        d,
        g,
        x.gpu(),
        residual.map(|r| r.gpu()),
        &t.params(),
        y.gpu_mut(),
    ));
    y
}

/// Which BN gradients to compute: (dx, dgamma, dbeta, dr), each None when not wanted.
pub(crate) type BnGradOut = (
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
);

#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_backward(
    d: &CudaDevice,
    g: &BnGeom,
    x: &Tensor,
    y: &Tensor,
    dy: &Tensor,
    t: &BnTensors<'_>,
    train: bool,
    want: [bool; 4],
) -> BnGradOut {
    let shape_c = [g.c];
    let mut dx = want[0].then(|| output(d, x.shape()));
    let mut dgamma = want[1].then(|| output(d, &shape_c));
    let mut dbeta = want[2].then(|| output(d, &shape_c));
    let mut dr = want[3].then(|| output(d, x.shape()));
    let out = BnGradsGpu {
        dx: dx.as_mut().map(|t| t.gpu_mut()),
        dgamma: dgamma.as_mut().map(|t| t.gpu_mut()),
        dbeta: dbeta.as_mut().map(|t| t.gpu_mut()),
        dr: dr.as_mut().map(|t| t.gpu_mut()),
    };
    ok(gbn::backward(
        d,
        g,
        x.gpu(),
        y.gpu(),
        dy.gpu(),
        &t.params(),
        train,
        out,
    ));
    (dx, dgamma, dbeta, dr)
}

pub(crate) fn bn_running_update(
    d: &CudaDevice,
    mean: &mut Tensor,
    var: &mut Tensor,
    batch_mean: &Tensor,
    batch_var: &Tensor,
    momentum: f64,
) {
    ok(gbn::running_update(
        d,
        mean.gpu_mut(),
        var.gpu_mut(),
        batch_mean.gpu(),
        batch_var.gpu(),
        momentum,
    ));
}

pub(crate) fn linear(d: &CudaDevice, s: LinearShape, x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let mut y = output(d, &[s.n, s.out]);
    ok(glin::forward(d, s, x.gpu(), w.gpu(), b.gpu(), y.gpu_mut()));
    y
}

pub(crate) fn linear_backward_data(
    d: &CudaDevice,
    s: LinearShape,
    w: &Tensor,
    dy: &Tensor,
) -> Tensor {
    let mut dx = output(d, &[s.n, s.inp]);
    ok(glin::backward_data(d, s, w.gpu(), dy.gpu(), dx.gpu_mut()));
    dx
}

pub(crate) fn linear_backward_params(
    d: &CudaDevice,
    s: LinearShape,
    x: &Tensor,
    dy: &Tensor,
) -> (Tensor, Tensor) {
    let (mut dw, mut db) = (output(d, &[s.out, s.inp]), output(d, &[s.out]));
    ok(glin::backward_params(
        d,
        s,
        x.gpu(),
        dy.gpu(),
        dw.gpu_mut(),
        db.gpu_mut(),
    ));
    (dw, db)
}

pub(crate) fn avg_pool(d: &CudaDevice, x: &Tensor) -> Tensor {
    let s = x.shape();
    let mut y = output(d, &[s[0], s[1]]);
    ok(gel::avg_pool(
        d,
        x.gpu(),
        s[0] * s[1],
        s[2] * s[3],
        y.gpu_mut(),
    ));
    y
}

pub(crate) fn avg_pool_backward(d: &CudaDevice, dy: &Tensor, x_shape: &[usize]) -> Tensor {
    let mut dx = output(d, x_shape);
    ok(gel::avg_pool_backward(
        d,
        dy.gpu(),
        x_shape[0] * x_shape[1],
        x_shape[2] * x_shape[3],
        dx.gpu_mut(),
    ));
    dx
}

pub(crate) fn add(d: &CudaDevice, a: &Tensor, b: &Tensor) -> Tensor {
    let mut y = output(d, a.shape());
    ok(gel::add(d, a.gpu(), b.gpu(), y.gpu_mut()));
    y
}

pub(crate) fn accumulate(d: &CudaDevice, acc: &mut Tensor, v: &Tensor) {
    ok(gel::accumulate(d, acc.gpu_mut(), v.gpu()));
}

/// acc += Σ over the samples of a and b of |a − b| (acc holds one sample's shape).
pub(crate) fn abs_diff_accumulate(d: &CudaDevice, acc: &mut Tensor, a: &Tensor, b: &Tensor) {
    ok(gel::abs_diff_accumulate(d, acc.gpu_mut(), a.gpu(), b.gpu()));
}

pub(crate) fn scale(d: &CudaDevice, x: &Tensor, alpha: f32) -> Tensor {
    let mut y = output(d, x.shape());
    ok(gel::scale(d, x.gpu(), alpha, y.gpu_mut()));
    y
}

pub(crate) fn channel_affine(d: &CudaDevice, x: &Tensor, scale: &[f32], shift: &[f32]) -> Tensor {
    let hw = x.shape()[2..].iter().product();
    let mut y = output(d, x.shape());
    ok(gel::channel_affine(
        d,
        x.gpu(),
        &upload(d, scale),
        &upload(d, shift),
        hw,
        y.gpu_mut(),
    ));
    y
}

pub(crate) fn channel_affine_backward(d: &CudaDevice, dy: &Tensor, scale: &[f32]) -> Tensor {
    let hw = dy.shape()[2..].iter().product();
    let mut dx = output(d, dy.shape());
    ok(gel::channel_affine_backward(
        d,
        dy.gpu(),
        &upload(d, scale),
        hw,
        dx.gpu_mut(),
    ));
    dx
}

/// (loss [1], probabilities) of a cross-entropy on the GPU.
pub(crate) fn cross_entropy(
    d: &CudaDevice,
    logits: &Tensor,
    labels: &DeviceBuffer<u32>,
    sum: bool,
) -> (Tensor, Tensor) {
    let k = logits.shape()[1];
    let (mut l, mut p) = (output(d, &[1]), output(d, logits.shape()));
    ok(gloss::cross_entropy(
        d,
        logits.gpu(),
        labels,
        k,
        sum,
        p.gpu_mut(),
        l.gpu_mut(),
    ));
    (l, p)
}

/// The cross-entropy's gradient; `g` is the upstream gradient, read back as one scalar.
pub(crate) fn cross_entropy_backward(
    d: &CudaDevice,
    probs: &Tensor,
    labels: &DeviceBuffer<u32>,
    sum: bool,
    g: f32,
) -> Tensor {
    let k = probs.shape()[1];
    let mut dz = output(d, probs.shape());
    ok(gloss::cross_entropy_backward(
        d,
        probs.gpu(),
        labels,
        k,
        sum,
        g,
        dz.gpu_mut(),
    ));
    dz
}

/// (loss [1], p_s, p_t) of KL_T(s ‖ t).
pub(crate) fn kl_div(
    d: &CudaDevice,
    s: &Tensor,
    t: &Tensor,
    temp: f64,
) -> (Tensor, Tensor, Tensor) {
    let k = s.shape()[1];
    let (mut l, mut ps, mut pt) = (output(d, &[1]), output(d, s.shape()), output(d, s.shape()));
    ok(gloss::kl_div(
        d,
        s.gpu(),
        t.gpu(),
        k,
        temp,
        ps.gpu_mut(),
        pt.gpu_mut(),
        l.gpu_mut(),
    ));
    (l, ps, pt)
}

pub(crate) fn kl_div_backward(
    d: &CudaDevice,
    ps: &Tensor,
    pt: &Tensor,
    temp: f64,
    g: f32,
) -> Tensor {
    let k = ps.shape()[1];
    let mut ds = output(d, ps.shape());
    ok(gloss::kl_div_backward(
        d,
        ps.gpu(),
        pt.gpu(),
        k,
        temp,
        g,
        ds.gpu_mut(),
    ));
    ds
}

fn at_shape(f: &Tensor) -> AtShape {
    let s = f.shape();
    AtShape {
        n: s[0],
        ch: s[1],
        hw: s[2..].iter().product(),
    }
}

/// The attention map of features (no loss).
pub(crate) fn attention_map(d: &CudaDevice, f: &Tensor) -> Tensor {
    let s = at_shape(f);
    let (mut a, mut norms) = (output(d, &[s.n, s.hw]), output(d, &[s.n]));
    ok(gloss::attention(
        d,
        s,
        f.gpu(),
        None,
        a.gpu_mut(),
        norms.gpu_mut(),
        None,
    ));
    a
}

/// (loss [1], a(F_s), norms) of attention transfer against the target map `at`.
pub(crate) fn attention(d: &CudaDevice, fs: &Tensor, at: &Tensor) -> (Tensor, Tensor, Tensor) {
    let s = at_shape(fs);
    let (mut l, mut a, mut norms) = (output(d, &[1]), output(d, &[s.n, s.hw]), output(d, &[s.n]));
    ok(gloss::attention(
        d,
        s,
        fs.gpu(),
        Some(at.gpu()),
        a.gpu_mut(),
        norms.gpu_mut(),
        Some(l.gpu_mut()),
    ));
    (l, a, norms)
}

pub(crate) fn attention_backward(
    d: &CudaDevice,
    fs: &Tensor,
    a: &Tensor,
    norms: &Tensor,
    at: &Tensor,
    g: f32,
) -> Tensor {
    let mut dfs = output(d, fs.shape());
    ok(gloss::attention_backward(
        d,
        at_shape(fs),
        fs.gpu(),
        a.gpu(),
        norms.gpu(),
        at.gpu(),
        g,
        dfs.gpu_mut(),
    ));
    dfs
}

/// The JSD loss [1] of three logit batches (clean, augmented 1, augmented 2).
pub(crate) fn jsd(d: &CudaDevice, z: [&Tensor; 3]) -> Tensor {
    let k = z[0].shape()[1];
    let mut l = output(d, &[1]);
    ok(gloss::jsd(d, z.map(|t| t.gpu()), k, l.gpu_mut()));
    l
}

/// The JSD's gradients for the three logit batches; `g` is the upstream gradient.
pub(crate) fn jsd_backward(d: &CudaDevice, z: [&Tensor; 3], g: f32) -> [Tensor; 3] {
    let k = z[0].shape()[1];
    let mut dz = z.map(|t| output(d, t.shape()));
    let [d0, d1, d2] = &mut dz;
    ok(gloss::jsd_backward(
        d,
        z.map(|t| t.gpu()),
        k,
        g,
        [d0.gpu_mut(), d1.gpu_mut(), d2.gpu_mut()],
    ));
    dz
}

/// SNL's soft ReLU of z [n, ...] with α of one sample's shape.
pub(crate) fn soft_relu(d: &CudaDevice, z: &Tensor, alpha: &Tensor) -> Tensor {
    let mut y = output(d, z.shape());
    ok(gsr::forward(d, z.gpu(), alpha.gpu(), y.gpu_mut()));
    y
}

pub(crate) fn soft_relu_backward_input(
    d: &CudaDevice,
    z: &Tensor,
    alpha: &Tensor,
    dy: &Tensor,
) -> Tensor {
    let mut dz = output(d, z.shape());
    ok(gsr::backward_input(
        d,
        z.gpu(),
        alpha.gpu(),
        dy.gpu(),
        dz.gpu_mut(),
    ));
    dz
}

pub(crate) fn soft_relu_backward_alpha(
    d: &CudaDevice,
    z: &Tensor,
    alpha_shape: &[usize],
    dy: &Tensor,
) -> Tensor {
    let mut da = output(d, alpha_shape);
    ok(gsr::backward_alpha(d, z.gpu(), dy.gpu(), da.gpu_mut()));
    da
}

pub(crate) fn sgd_update(
    d: &CudaDevice,
    p: &mut Tensor,
    buf: &mut Tensor,
    g: &Tensor,
    lr: f32,
    cfg: &SgdConfig,
    first: bool,
) {
    ok(gopt::sgd_update(
        d,
        p.gpu_mut(),
        buf.gpu_mut(),
        g.gpu(),
        lr,
        cfg,
        first,
    ));
}

pub(crate) fn adam_update(
    d: &CudaDevice,
    p: &mut Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    g: &Tensor,
    k: &AdamStep,
) {
    ok(gopt::adam_update(
        d,
        p.gpu_mut(),
        m.gpu_mut(),
        v.gpu_mut(),
        g.gpu(),
        k,
    ));
}
