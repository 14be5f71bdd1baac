//! The GPU probe, safe on machines with no CUDA at all.

use std::sync::OnceLock;

#[derive(Clone, Debug)]
pub enum GpuProbe {
    /// No usable GPU, and why not (no driver library, no device, context creation failed).
    Absent(String),
    /// A GPU the driver can open.
    Present {
        name: String,
        compute_capability: (i32, i32),
    },
}

/// Probes once per process and caches the answer (each probe dlopens libcuda).
pub fn probe_gpu() -> GpuProbe {
    static PROBE: OnceLock<GpuProbe> = OnceLock::new();
    PROBE.get_or_init(probe_uncached).clone()
}

fn probe_uncached() -> GpuProbe {
    // SAFETY: a plain dlopen test of the driver library; it touches no CUDA state.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return GpuProbe::Absent("no CUDA driver library (libcuda) on this machine".into());
    }
    let ctx = match cudarc::driver::CudaContext::new(0) {
        Ok(ctx) => ctx,
        Err(e) => return GpuProbe::Absent(format!("CUDA driver present but no usable GPU: {e}")),
    };
    let name = ctx.name().unwrap_or_else(|_| "unnamed GPU".into());
    let compute_capability = ctx.compute_capability().unwrap_or((0, 0));
    GpuProbe::Present {
        name,
        compute_capability,
    }
}
