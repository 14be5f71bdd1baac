//! The layer shapes a model really runs, read from one forward pass of the model itself (so
//! the benches can never drift from the architectures in src/nn).

use crate::autograd::{GradMode, Graph};
use crate::error::Result;
use crate::geom::ConvGeom;
use crate::nn::{Arch, Domain, Model, ModelConfig, Pass};
use crate::tensor::Tensor;

/// One model's convolutions and masked-ReLU sites at batch 1.
pub struct ModelShapes {
    pub arch: Arch,
    pub width: f32,
    /// Every convolution, in forward order (n = 1).
    pub convs: Vec<ConvGeom>,
    /// Every masked-ReLU site [C, H, W] (each follows a BatchNorm), in forward order.
    pub relus: Vec<[usize; 3]>,
}

impl ModelShapes {
    /// Builds the model on the CPU and runs one 32x32 image through it (no gradients).
    pub fn of(arch: Arch, width: f32) -> Result<ModelShapes> {
        let model = Model::new(ModelConfig::new(arch, width), 0)?;
        let size = model.config.input_size;
        let mut g = Graph::new(&model.store, GradMode::None);
        let x = g.input(Tensor::full(&[1, 3, size, size], 0.5), false);
        model.forward(
            &mut g,
            x,
            Pass {
                domain: Domain::Clean,
                train: false,
            },
        );
        Ok(ModelShapes {
            arch,
            width,
            convs: g.conv_geoms(),
            relus: model.relu_layers.iter().map(|l| l.shape).collect(),
        })
    }

    /// FLOPs (2 per multiply-add) of one image's forward convolutions: the unit "F" of
    /// perf-anchors.md §3.1 (the final linear layer adds under 0.01%).
    pub fn forward_flops(&self) -> f64 {
        self.convs.iter().map(|g| 2.0 * g.macs() as f64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet18_has_its_published_cost_and_relu_count() {
        let s = ModelShapes::of(Arch::ResNet18, 1.0).unwrap();
        // 17 3x3 convs + 3 1x1 shortcuts; 0.5554 GMAC (perf-anchors.md §3.1, conv only).
        assert_eq!(s.convs.len(), 20);
        assert!(
            (s.forward_flops() / 2e9 - 0.5554).abs() < 0.001,
            "{}",
            s.forward_flops()
        );
        let relus: usize = s.relus.iter().map(|r| r.iter().product::<usize>()).sum();
        assert_eq!(relus, 557_056);
    }
}
