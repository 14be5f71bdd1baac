//! Reverse pass over a graph: each node's gradient is handed to its op's backward rule
//! (`Backward`), which produces gradients for the inputs that need them. Gradients live on the
//! graph's device, except those of one-element values (losses and their sums), which stay on
//! the host: a loss kernel then reads its upstream gradient as a plain scalar, with no download.

use super::{EntryId, Graph, NodeOp, ParamStore, Var};
use crate::device::{ok, Device};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Gradients produced by `Graph::backward`, on the graph's device.
#[derive(Debug, Default)]
pub struct Gradients {
    params: HashMap<EntryId, Tensor>,
    inputs: HashMap<usize, Tensor>,
}

impl Gradients {
    /// Parameter gradients given directly rather than by a backward pass (optimiser tests
    /// replaying PyTorch's gradients).
    pub fn from_params(params: impl IntoIterator<Item = (EntryId, Tensor)>) -> Gradients {
        Gradients {
            params: params.into_iter().collect(),
            inputs: HashMap::new(),
        }
    }

    /// The gradient of a store parameter (None if the loss does not depend on it).
    pub fn param(&self, id: EntryId) -> Option<&Tensor> {
        self.params.get(&id)
    }

    /// The gradient of an input created with `requires_grad`.
    pub fn input(&self, v: Var) -> Option<&Tensor> {
        self.inputs.get(&v.0)
    }
}

/// One reverse pass in progress: what a backward rule reads (values, which inputs need
/// gradients) and where it leaves the gradients it computes.
pub struct BackwardPass<'g> {
    graph: &'g Graph<'g>,
    grads: Vec<Option<Tensor>>,
}

impl<'g> BackwardPass<'g> {
    /// A node's forward value (borrowed from the graph, not from the pass, so gradients can be
    /// accumulated while it is held).
    pub fn value(&self, v: Var) -> &'g Tensor {
        self.graph.value(v)
    }

    pub fn needs(&self, v: Var) -> bool {
        self.graph.needs(v)
    }

    pub fn device(&self) -> &'g Device {
        self.graph.device()
    }

    pub fn store(&self) -> &'g ParamStore {
        self.graph.store()
    }

    /// Adds `g` to `v`'s gradient.
    pub fn accumulate(&mut self, v: Var, g: Tensor) {
        match &mut self.grads[v.0] {
            Some(acc) => ok(acc.add_assign(&g, self.graph.device())),
            slot @ None => *slot = Some(g),
        }
    }
}

impl Graph<'_> {
    /// Gradients of the scalar `loss` with respect to every parameter and marked input.
    pub fn backward(&self, loss: Var) -> Gradients {
        assert_eq!(
            self.value(loss).numel(),
            1,
            "backward: the loss must be a scalar"
        );
        self.propagate(loss, Tensor::scalar(1.0))
    }

    /// The vector-Jacobian product: gradients of <seed, out> for a `seed` shaped like `out`,
    /// on the graph's device (PyTorch's `out.backward(seed)`).
    pub fn backward_from(&self, out: Var, seed: Tensor) -> Gradients {
        assert_eq!(
            self.value(out).shape(),
            seed.shape(),
            "backward_from: the seed must have the output's shape"
        );
        self.propagate(out, seed)
    }

    /// Runs the tape backwards from `loss`, whose gradient is `seed`.
    fn propagate(&self, loss: Var, seed: Tensor) -> Gradients {
        let mut pass = BackwardPass {
            graph: self,
            grads: (0..self.nodes.len()).map(|_| None).collect(),
        };
        pass.grads[loss.0] = Some(seed);
        let mut out = Gradients::default();
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if !node.needs_grad {
                continue;
            }
            let Some(g) = pass.grads[i].take() else {
                continue;
            };
            match &node.op {
                NodeOp::Input => {
                    out.inputs.insert(i, g);
                }
                NodeOp::Param(id) => {
                    out.params.insert(*id, g);
                }
                NodeOp::Op(op) => op.backward(&mut pass, Var(i), &g),
            }
        }
        out
    }
}
