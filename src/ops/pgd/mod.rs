//! The two element-wise pieces of L∞ PGD (spec §3): the random start and the signed step with
//! its projection. The CPU reference (cpu.rs), the CUDA launchers (cuda.rs), and one function
//! each that looks at the device once; the adversary that drives them is `robust::pgd`.

pub mod cpu;
pub mod cuda;

use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// x = clip_[0,1](x0 + U(−eps, eps)), keyed by (seed, key, element), into `x` (x0's shape).
pub fn random_start(
    dev: &Device,
    x0: &Tensor,
    eps: f32,
    seed: u64,
    key: u64,
    x: &mut Tensor,
) -> Result<()> {
    match dev {
        Device::Cpu => {
            cpu::random_start(x0.data(), eps, seed, key, x.data_mut());
            Ok(())
        }
        Device::Cuda(d) => cuda::random_start(d, x0.gpu(), eps, seed, key, x.gpu_mut()),
    }
}

/// x ← clip_[0,1](clip_[x0−eps, x0+eps](x + alpha·sign(grad))).
pub fn step(
    dev: &Device,
    x: &mut Tensor,
    x0: &Tensor,
    grad: &Tensor,
    alpha: f32,
    eps: f32,
) -> Result<()> {
    match dev {
        Device::Cpu => {
            cpu::step(x.data_mut(), x0.data(), grad.data(), alpha, eps);
            Ok(())
        }
        Device::Cuda(d) => cuda::step(d, x.gpu_mut(), x0.gpu(), grad.gpu(), alpha, eps),
    }
}
