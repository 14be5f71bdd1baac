//! The CUDA device: one context and stream, kernels compiled by NVRTC on first use (per kernel
//! file, cached for the process), uploads, downloads and event timing.

use super::kernels::{expanded_source, FILES};
use super::nvrtc::compile_cubin;
use crate::error::{Error, Result};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    /// "sm_90" on an H200: kernels are compiled for exactly this architecture.
    arch: String,
    sm_count: usize,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}, {})", self.name, self.arch)
    }
}

fn driver_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::NoGpu {
        reason: format!("{what}: {e}"),
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal`. Callers go through `probe_gpu` first: cudarc panics when libcuda
    /// is absent, and this must never be reached then.
    pub fn open(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("CUDA context", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unnamed GPU".into());
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| driver_err("multiprocessor count", e))? as usize;
        let stream = ctx.default_stream();
        Ok(Arc::new(CudaDevice {
            ctx,
            stream,
            name,
            arch: format!("sm_{major}{minor}"),
            sm_count,
            modules: Mutex::new(HashMap::new()),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Streaming multiprocessors (132 on an H200): launchers size split reductions by it.
    pub fn sm_count(&self) -> usize {
        self.sm_count
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Kernel `kernel` of kernel file `file` (e.g. "conv2d", "conv2d_fwd"), compiling the file
    /// on first use.
    pub fn function(&self, file: &str, kernel: &str) -> Result<CudaFunction> {
        let module = {
            let mut modules = self
                .modules
                .lock()
                .map_err(|_| driver_err("module cache", "poisoned"))?;
            match modules.get(file) {
                Some(m) => m.clone(),
                None => {
                    let f = FILES.iter().find(|f| f.name == file).ok_or_else(|| {
                        driver_err("kernel registry", format!("no kernel file {file}"))
                    })?;
                    let compiled = compile_cubin(f.name, &expanded_source(f), &self.arch)?;
                    let m = self
                        .ctx
                        .load_module(Ptx::from_binary(compiled.cubin))
                        .map_err(|e| driver_err(&format!("loading {file}"), e))?;
                    modules.insert(f.name, m.clone());
                    m
                }
            }
        };
        module
            .load_function(kernel)
            .map_err(|e| driver_err(&format!("kernel {kernel} in {file}"), e))
    }

    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(data)
            .map_err(|e| driver_err("upload", e))
    }

    pub fn download<T: DeviceRepr + Default + Clone>(&self, data: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(data)
            .map_err(|e| driver_err("download", e))
    }

    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros(n.max(1))
            .map_err(|e| driver_err("allocation", e))
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_err("synchronize", e))
    }
}
