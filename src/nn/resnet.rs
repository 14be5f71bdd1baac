//! CIFAR ResNet18 (spec §2.1): conv3x3 stem (no max-pool), four stages of two BasicBlocks
//! (widths 64-128-256-512, first block of stages 2-4 strided), global average pool, linear.
//! 17 masked ReLUs: the stem's, then (a, b) of each block.

use super::builder::Builder;
use super::{DomainBn, ModelOutput, Pass};
use crate::autograd::{EntryId, Graph, Var};

struct Shortcut {
    conv: EntryId,
    bn: DomainBn,
}

struct Block {
    stride: usize,
    conv1: EntryId,
    bn1: DomainBn,
    mask1: EntryId,
    conv2: EntryId,
    bn2: DomainBn,
    shortcut: Option<Shortcut>,
    mask2: EntryId,
}

pub(super) struct ResNet {
    conv1: EntryId,
    bn1: DomainBn,
    mask0: EntryId,
    /// blocks[stage][i]
    blocks: Vec<Vec<Block>>,
    linear: (EntryId, EntryId),
}

impl ResNet {
    pub fn build(b: &mut Builder<'_>) -> ResNet {
        let cfg = b.cfg.clone();
        let mut size = cfg.input_size;
        let stem = cfg.width(64);
        let conv1 = b.conv("conv1", stem, 3, 3);
        let bn1 = b.bn("bn1", stem, false);
        let r = b.relu("relu", stem, size, size, conv1);
        let mask0 = b.mask_id(r);
        let mut c_in = stem;
        let mut blocks = Vec::new();
        for (stage, base) in [64, 128, 256, 512].into_iter().enumerate() {
            let planes = cfg.width(base);
            let mut stage_blocks = Vec::new();
            for i in 0..2 {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                size /= stride;
                let p = format!("layer{}.{i}", stage + 1);
                let conv1 = b.conv(&format!("{p}.conv1"), planes, c_in, 3);
                let bn1 = b.bn(&format!("{p}.bn1"), planes, false);
                let r1 = b.relu(&format!("{p}.relu1"), planes, size, size, conv1);
                let conv2 = b.conv(&format!("{p}.conv2"), planes, planes, 3);
                let bn2 = b.bn(&format!("{p}.bn2"), planes, false);
                let shortcut = (stride != 1 || c_in != planes).then(|| Shortcut {
                    conv: b.conv(&format!("{p}.shortcut.0"), planes, c_in, 1),
                    bn: b.bn(&format!("{p}.shortcut.1"), planes, cfg.shared_shortcut_bn),
                });
                // conv2 feeds relu2 (through bn2 and the residual sum); the shortcut conv only
                // carries the block input along.
                let r2 = b.relu(&format!("{p}.relu2"), planes, size, size, conv2);
                stage_blocks.push(Block {
                    stride,
                    conv1,
                    bn1,
                    mask1: b.mask_id(r1),
                    conv2,
                    bn2,
                    shortcut,
                    mask2: b.mask_id(r2),
                });
                c_in = planes;
            }
            blocks.push(stage_blocks);
        }
        let linear = b.linear("linear", cfg.num_classes, c_in, false);
        ResNet {
            conv1,
            bn1,
            mask0,
            blocks,
            linear,
        }
    }

    pub fn forward(&self, g: &mut Graph<'_>, x: Var, pass: Pass) -> ModelOutput {
        let (d, train) = (pass.domain, pass.train);
        let mut relus = Vec::with_capacity(17);
        let h = g.conv2d(x, self.conv1, 1, 1);
        let mut out = g.bn_act(
            h,
            self.bn1.for_domain(d),
            None,
            true,
            Some(self.mask0),
            train,
        );
        relus.push(out);
        let mut taps = Vec::with_capacity(4);
        for stage in &self.blocks {
            for blk in stage {
                let h = g.conv2d(out, blk.conv1, blk.stride, 1);
                let a = g.bn_act(h, blk.bn1.for_domain(d), None, true, Some(blk.mask1), train);
                relus.push(a);
                let h2 = g.conv2d(a, blk.conv2, 1, 1);
                let sc = match &blk.shortcut {
                    Some(s) => {
                        let c = g.conv2d(out, s.conv, blk.stride, 0);
                        g.bn_act(c, s.bn.for_domain(d), None, false, None, train)
                    }
                    None => out,
                };
                out = g.bn_act(
                    h2,
                    blk.bn2.for_domain(d),
                    Some(sc),
                    true,
                    Some(blk.mask2),
                    train,
                );
                relus.push(out);
            }
            taps.push(out);
        }
        let pooled = g.avg_pool(out);
        let logits = g.linear(pooled, self.linear.0, self.linear.1);
        ModelOutput {
            logits,
            taps,
            relus,
        }
    }
}
