//! Per-channel sums of a GPU tensor that the op writing it computed in passing, for the
//! BatchNorm that normalises it next: the bf16 convolution's epilogue sums each output channel
//! while its tile is still in registers, which saves the statistics pass a read of the whole
//! tensor (kernels/conv2d_bf16.cu, `sums`).

use crate::device::buffer::DeviceBuffer;

/// (sum, sum of squares) of each channel of one [n, c, ...] tensor, in f64, split into slices
/// of its (sample, pixel) pairs that add up to the whole: `partial` [channels][slices][2], the
/// layout of kernels/bn_act.cu's `partial`, which `bn_act_stats_final` merges in a fixed order.
#[derive(Debug)]
pub struct ChannelSums {
    pub partial: DeviceBuffer<f64>,
    pub channels: usize,
    pub slices: usize,
}
