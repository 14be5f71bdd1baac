//! Fully connected layer y [n, out] = x [n, in] · wᵀ + b: the CPU reference (cpu.rs, generic
//! over f32/f64), the CUDA launchers (cuda.rs), one function per direction that looks at the
//! device once, and the graph node.

pub mod cpu;
pub mod cuda;

pub use cuda::LinearShape;

use crate::autograd::{Backward, BackwardPass, EntryId, Graph, Traced, Var};
use crate::device::{ok, Device};
use crate::error::Result;
use crate::tensor::Tensor;

pub fn forward(dev: &Device, s: LinearShape, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = [s.n, s.out];
    match dev {
        Device::Cpu => {
            let mut y = Tensor::zeros(&shape);
            cpu::forward(
                x.data(),
                w.data(),
                b.data(),
                s.n,
                s.inp,
                s.out,
                y.data_mut(),
            );
            Ok(y)
        }
        Device::Cuda(d) => {
            let mut y = Tensor::uninit_gpu(d, &shape)?;
            cuda::forward(d, s, x.gpu(), w.gpu(), b.gpu(), y.gpu_mut())?;
            Ok(y)
        }
    }
}

/// dx [n, in] = dy · w.
pub fn backward_data(dev: &Device, s: LinearShape, w: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let shape = [s.n, s.inp];
    match dev {
        Device::Cpu => {
            let mut dx = Tensor::zeros(&shape);
            cpu::backward_data(w.data(), dy.data(), s.n, s.inp, s.out, dx.data_mut());
            Ok(dx)
        }
        Device::Cuda(d) => {
            let mut dx = Tensor::uninit_gpu(d, &shape)?;
            cuda::backward_data(d, s, w.gpu(), dy.gpu(), dx.gpu_mut())?;
            Ok(dx)
        }
    }
}

/// (dw [out, in], db [out]) = (dyᵀ · x, Σ_n dy).
pub fn backward_params(
    dev: &Device,
    s: LinearShape,
    x: &Tensor,
    dy: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (ws, bs) = ([s.out, s.inp], [s.out]);
    match dev {
        Device::Cpu => {
            let (mut dw, mut db) = (Tensor::zeros(&ws), Tensor::zeros(&bs));
            cpu::backward_params(
                x.data(),
                dy.data(),
                s.n,
                s.inp,
                s.out,
                dw.data_mut(),
                db.data_mut(),
            );
            Ok((dw, db))
        }
        Device::Cuda(d) => {
            let (mut dw, mut db) = (Tensor::uninit_gpu(d, &ws)?, Tensor::uninit_gpu(d, &bs)?);
            cuda::backward_params(d, s, x.gpu(), dy.gpu(), dw.gpu_mut(), db.gpu_mut())?;
            Ok((dw, db))
        }
    }
}

struct LinearNode {
    x: Var,
    w: Var,
    b: Var,
}

impl Backward for LinearNode {
    fn traced(&self) -> Option<Traced<'_>> {
        Some(Traced::Linear {
            x: self.x,
            w: self.w,
            b: self.b,
        })
    }

    fn backward(&self, pass: &mut BackwardPass<'_>, _out: Var, g: &Tensor) {
        let xs = pass.value(self.x).shape();
        let s = LinearShape {
            n: xs[0],
            inp: xs[1],
            out: pass.value(self.w).dim(0),
        };
        let dev = pass.device();
        if pass.needs(self.x) {
            let dx = ok(backward_data(dev, s, pass.value(self.w), g));
            pass.accumulate(self.x, dx);
        }
        if pass.needs(self.w) || pass.needs(self.b) {
            let (dw, db) = ok(backward_params(dev, s, pass.value(self.x), g));
            pass.accumulate(self.w, dw);
            pass.accumulate(self.b, db);
        }
    }
}

impl Graph<'_> {
    /// y = x · wᵀ + b for x [n, in].
    pub fn linear(&mut self, x: Var, w: EntryId, b: EntryId) -> Var {
        let (wv, bv) = (self.param(w), self.param(b));
        let s = LinearShape {
            n: self.value(x).dim(0),
            inp: self.value(x).dim(1),
            out: self.value(wv).dim(0),
        };
        let y = ok(forward(
            self.device(),
            s,
            self.value(x),
            self.value(wv),
            self.value(bv),
        ));
        self.push(LinearNode { x, w: wv, b: bv }, y, &[x, wv, bv])
    }
}
