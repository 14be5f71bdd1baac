//! The tape: one `Graph` per step records nodes and walks them back for gradients of
//! parameters and of inputs (PGD needs dL/dx). The tape knows no op: each op family of
//! `crate::ops` defines its graph method, its node (what its backward needs) and its backward
//! rule in its own module, through `Graph::push` and the `Backward` trait.

mod backward;
pub mod store;

pub use backward::{BackwardPass, Gradients};
pub use store::{Entry, EntryId, EntryKind, ParamStore, StatUpdate};

use crate::device::{ok, Device};
use crate::tensor::channel_sums::ChannelSums;
use crate::tensor::precision::Precision;
use crate::tensor::Tensor;
use std::any::Any;
use std::collections::HashMap;

/// A handle to a node of one graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

impl Var {
    /// The node's position in its graph (`Graph::trace` order).
    pub fn index(self) -> usize {
        self.0
    }
}

/// Which gradients a graph computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradMode {
    /// Forward only (evaluation, the frozen teacher).
    None,
    /// Gradients reach inputs marked `requires_grad` but no parameter: attack steps skip every
    /// weight-gradient GEMM.
    InputsOnly,
    /// Gradients for parameters and marked inputs (training).
    All,
}

/// An op's node on the tape: what its backward needs (input handles, saved tensors) and the
/// rule that turns the gradient of its output into gradients of its inputs.
pub trait Backward: Any {
    /// Hands the gradients of this node's inputs to `pass`, given `g`, the gradient of its
    /// output `out`.
    fn backward(&self, pass: &mut BackwardPass<'_>, out: Var, g: &Tensor);

    /// The node as an inference exporter reads it (None: an op no model's inference uses,
    /// such as a loss).
    fn traced(&self) -> Option<Traced<'_>> {
        None
    }
}

/// An inference op as recorded on the tape: its inputs and its settings (`Graph::trace`).
pub enum Traced<'a> {
    /// y = x · scale[c] + shift[c].
    ChannelAffine {
        x: Var,
        scale: &'a [f32],
        shift: &'a [f32],
    },
    /// Cross-correlation with the weights `w` [c_out, c_in, k, k], no bias.
    Conv {
        x: Var,
        w: Var,
        stride: usize,
        pad: usize,
    },
    /// act(γ·(x − mean)·invstd + β (+ residual)); act is the identity, a ReLU, or a ReLU
    /// where the store entry `mask` [c·h·w] is 1 and the identity where it is 0.
    BnAct {
        x: Var,
        residual: Option<Var>,
        gamma: Var,
        beta: Var,
        mean: &'a Tensor,
        invstd: &'a Tensor,
        relu: bool,
        mask: Option<EntryId>,
    },
    Add {
        a: Var,
        b: Var,
    },
    /// The mean over each plane: [n, c, h, w] → [n, c].
    GlobalAvgPool {
        x: Var,
    },
    /// x · wᵀ + b, w [out, in].
    Linear {
        x: Var,
        w: Var,
        b: Var,
    },
}

/// One node of a recorded forward pass (`Graph::trace`).
pub enum TraceNode<'a> {
    Input,
    Param(EntryId),
    /// An op, or None for one that has no inference form.
    Op(Option<Traced<'a>>),
}

pub(crate) enum NodeOp {
    Input,
    Param(EntryId),
    Op(Box<dyn Backward>),
}

pub(crate) enum Value {
    Owned(Tensor),
    /// A parameter read in place from the store (no copy per step).
    Stored(EntryId),
}

pub(crate) struct Node {
    pub(crate) op: NodeOp,
    pub(crate) value: Value,
    pub(crate) needs_grad: bool,
}

pub struct Graph<'s> {
    store: &'s ParamStore,
    mode: GradMode,
    nodes: Vec<Node>,
    param_nodes: HashMap<EntryId, Var>,
    stat_updates: Vec<StatUpdate>,
    /// SNL's linearisation mode (see `set_soft_masks`).
    soft_masks: bool,
    /// The numerics of the ops that honour one (see `set_precision`).
    precision: Precision,
    /// Per-channel sums of values, left by the op that wrote each for the BatchNorm that
    /// normalises it (see `attach_channel_sums`).
    channel_sums: HashMap<Var, ChannelSums>,
}

impl<'s> Graph<'s> {
    pub fn new(store: &'s ParamStore, mode: GradMode) -> Self {
        Graph {
            store,
            mode,
            nodes: Vec::new(),
            param_nodes: HashMap::new(),
            stat_updates: Vec::new(),
            soft_masks: false,
            precision: Precision::F32,
            channel_sums: HashMap::new(),
        }
    }

    /// SNL's linearisation mode (baselines.md §2.1): while on, every masked ReLU of `bn_act`
    /// (relu with a mask) becomes the soft ReLU `α ⊙ relu(z) + (1 − α) ⊙ z` with α the mask
    /// entry itself, read as real values, and mask entries used from then on are leaves that
    /// get gradients under GradMode::All (`Gradients::param(mask_id)` is dα). Plain ReLUs (no
    /// mask) stay hard. Off (the default) changes nothing. Set it before the forward pass:
    /// a mask entry's leaf is created on first use and keeps its gradient setting.
    pub fn set_soft_masks(&mut self, on: bool) {
        self.soft_masks = on;
    }

    pub fn soft_masks(&self) -> bool {
        self.soft_masks
    }

    /// The numerics of the ops recorded from now on (`crate::ops::precision` says which ops
    /// change and how). Panics when the graph's device cannot compute in it: runs check the
    /// setting against their device (`Precision::check`) before they build a graph.
    pub fn set_precision(&mut self, p: Precision) {
        if let Err(e) = p.check(self.device()) {
            panic!("{e}");
        }
        self.precision = p;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn store(&self) -> &'s ParamStore {
        self.store
    }

    pub fn mode(&self) -> GradMode {
        self.mode
    }

    /// The device every tensor of this graph lives on: the store's.
    pub fn device(&self) -> &'s Device {
        self.store.device()
    }

    /// Leaves the per-channel sums of `v`'s value, which the op that wrote it computed in
    /// passing, for the train-mode BatchNorm that normalises it (`take_channel_sums`).
    pub fn attach_channel_sums(&mut self, v: Var, sums: ChannelSums) {
        self.channel_sums.insert(v, sums);
    }

    /// The sums `attach_channel_sums` left for `v`, once.
    pub fn take_channel_sums(&mut self, v: Var) -> Option<ChannelSums> {
        self.channel_sums.remove(&v)
    }

    pub fn value(&self, v: Var) -> &Tensor {
        match &self.nodes[v.0].value {
            Value::Owned(t) => t,
            Value::Stored(id) => self.store.get(*id),
        }
    }

    /// Whether `v`'s gradient is wanted.
    pub(crate) fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].needs_grad
    }

    /// Records an op's node with its output `value`; it needs a gradient when one of its
    /// `inputs` does (and the graph computes any).
    pub(crate) fn push(&mut self, node: impl Backward, value: Tensor, inputs: &[Var]) -> Var {
        let needs_grad = self.mode != GradMode::None && inputs.iter().any(|&v| self.needs(v));
        self.push_node(NodeOp::Op(Box::new(node)), Value::Owned(value), needs_grad)
    }

    fn push_node(&mut self, op: NodeOp, value: Value, needs_grad: bool) -> Var {
        self.nodes.push(Node {
            op,
            value,
            needs_grad,
        });
        Var(self.nodes.len() - 1)
    }

    /// The recorded nodes of one op type, in order (a model's layer shapes, read from one
    /// forward pass).
    pub(crate) fn nodes_of<T: Backward>(&self) -> impl Iterator<Item = &T> + '_ {
        self.nodes.iter().filter_map(|n| match &n.op {
            NodeOp::Op(b) => (b.as_ref() as &dyn Any).downcast_ref::<T>(),
            _ => None,
        })
    }

    /// The nodes recorded so far, in order (each node's `Var` is its index), as an inference
    /// exporter reads them.
    pub fn trace(&self) -> Vec<TraceNode<'_>> {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                NodeOp::Input => TraceNode::Input,
                NodeOp::Param(id) => TraceNode::Param(*id),
                NodeOp::Op(b) => TraceNode::Op(b.traced()),
            })
            .collect()
    }

    /// A data input, moved to the graph's device; `requires_grad` asks for d(loss)/d(input)
    /// (honoured unless mode is None).
    pub fn input(&mut self, t: Tensor, requires_grad: bool) -> Var {
        let t = ok(t.into_device(self.device()));
        let needs = requires_grad && self.mode != GradMode::None;
        self.push_node(NodeOp::Input, Value::Owned(t), needs)
    }

    /// A store entry as a leaf; one node per entry, so repeated use accumulates its gradient.
    /// Parameters get gradients under GradMode::All, and so do masks in soft-mask mode (SNL's
    /// α); buffers never do.
    pub fn param(&mut self, id: EntryId) -> Var {
        if let Some(&v) = self.param_nodes.get(&id) {
            return v;
        }
        let trainable = match self.store.entry(id).kind {
            EntryKind::Param => true,
            EntryKind::Mask => self.soft_masks,
            EntryKind::Buffer => false,
        };
        let needs = self.mode == GradMode::All && trainable;
        let v = self.push_node(NodeOp::Param(id), Value::Stored(id), needs);
        self.param_nodes.insert(id, v);
        v
    }

    /// Records a running-statistics update of a train-mode BatchNorm pass.
    pub(crate) fn record_stats(&mut self, update: StatUpdate) {
        self.stat_updates.push(update);
    }

    /// The BN running-statistics updates recorded by train-mode passes, in order.
    pub fn take_stat_updates(&mut self) -> Vec<StatUpdate> {
        std::mem::take(&mut self.stat_updates)
    }
}
