//! WRN-22-8 (spec §2.2): pre-activation WideResNet, 3 groups of 3 blocks (depth 22), widths
//! [16, 16k, 32k, 64k] with k = 8, i.e. [16, 128, 256, 512], strides 1-2-2, no dropout. Block: BN1 → ReLU1 → conv3x3(stride) → BN2 →
//! ReLU2 → conv3x3, added to the input, or to conv1x1 of the *activated* input when the width
//! changes. Then BN → ReLU → global average pool → fc. 19 masked ReLUs.

use super::builder::Builder;
use super::{DomainBn, ModelOutput, Pass};
use crate::autograd::{EntryId, Graph, Var};

struct Block {
    stride: usize,
    bn1: DomainBn,
    mask1: EntryId,
    conv1: EntryId,
    bn2: DomainBn,
    mask2: EntryId,
    conv2: EntryId,
    /// conv1x1 on the activated input when in and out widths differ.
    shortcut: Option<EntryId>,
}

pub(super) struct Wrn {
    conv1: EntryId,
    groups: Vec<Vec<Block>>,
    bn: DomainBn,
    mask: EntryId,
    fc: (EntryId, EntryId),
}

impl Wrn {
    pub fn build(b: &mut Builder<'_>) -> Wrn {
        let cfg = b.cfg.clone();
        let (depth, k) = cfg.wrn;
        let blocks_per_group = (depth - 4) / 6;
        let widths = [16, 16 * k, 32 * k, 64 * k].map(|w| cfg.width(w));
        let mut size = cfg.input_size;
        let conv1 = b.conv("conv1", widths[0], 3, 3);
        let mut c_in = widths[0];
        // The conv whose output the residual stream last received: it feeds the next BN-ReLU
        // on that stream (the stem for the first block; then each block's conv2, since the
        // shortcut only carries the block input along).
        let mut stream_conv = conv1;
        let mut groups = Vec::new();
        for (gi, stride0) in [1, 2, 2].into_iter().enumerate() {
            let out = widths[gi + 1];
            let mut blocks = Vec::new();
            for i in 0..blocks_per_group {
                let stride = if i == 0 { stride0 } else { 1 };
                let p = format!("block{}.layer.{i}", gi + 1);
                let bn1 = b.bn(&format!("{p}.bn1"), c_in, false);
                // ReLU1 acts on the block input, before any stride.
                let r1 = b.relu(&format!("{p}.relu1"), c_in, size, size, stream_conv);
                let conv1 = b.conv(&format!("{p}.conv1"), out, c_in, 3);
                size /= stride;
                let bn2 = b.bn(&format!("{p}.bn2"), out, false);
                let r2 = b.relu(&format!("{p}.relu2"), out, size, size, conv1);
                let conv2 = b.conv(&format!("{p}.conv2"), out, out, 3);
                let shortcut =
                    (c_in != out).then(|| b.conv(&format!("{p}.convShortcut"), out, c_in, 1));
                blocks.push(Block {
                    stride,
                    bn1,
                    mask1: b.mask_id(r1),
                    conv1,
                    bn2,
                    mask2: b.mask_id(r2),
                    conv2,
                    shortcut,
                });
                c_in = out;
                stream_conv = conv2;
            }
            groups.push(blocks);
        }
        let bn = b.bn("bn1", c_in, false);
        let r = b.relu("relu", c_in, size, size, stream_conv);
        let mask = b.mask_id(r);
        let fc = b.linear("fc", cfg.num_classes, c_in, true);
        Wrn {
            conv1,
            groups,
            bn,
            mask,
            fc,
        }
    }

    pub fn forward(&self, g: &mut Graph<'_>, x: Var, pass: Pass) -> ModelOutput {
        let (d, train) = (pass.domain, pass.train);
        let mut relus = Vec::with_capacity(19);
        let mut taps = Vec::with_capacity(3);
        let mut out = g.conv2d(x, self.conv1, 1, 1);
        for group in &self.groups {
            for blk in group {
                let a = g.bn_act(
                    out,
                    blk.bn1.for_domain(d),
                    None,
                    true,
                    Some(blk.mask1),
                    train,
                );
                relus.push(a);
                let h = g.conv2d(a, blk.conv1, blk.stride, 1);
                let b2 = g.bn_act(h, blk.bn2.for_domain(d), None, true, Some(blk.mask2), train);
                relus.push(b2);
                let h2 = g.conv2d(b2, blk.conv2, 1, 1);
                let sc = match blk.shortcut {
                    Some(w) => g.conv2d(a, w, blk.stride, 0),
                    None => out,
                };
                out = g.add(sc, h2);
            }
            taps.push(out);
        }
        let a = g.bn_act(
            out,
            self.bn.for_domain(d),
            None,
            true,
            Some(self.mask),
            train,
        );
        relus.push(a);
        let pooled = g.avg_pool(a);
        let logits = g.linear(pooled, self.fc.0, self.fc.1);
        ModelOutput {
            logits,
            taps,
            relus,
        }
    }
}
