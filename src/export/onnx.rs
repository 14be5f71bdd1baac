//! A model's inference graph as ONNX (opset 17): one eval-mode forward pass under the chosen
//! BN set is recorded on the tape (`Graph::trace`) and each recorded op becomes ONNX nodes:
//!
//! | rlnet op | ONNX |
//! |---|---|
//! | input normalisation (`channel_affine`) | Mul, Add with [1, 3, 1, 1] constants |
//! | conv2d | Conv (no bias) |
//! | BN (+ residual) (+ masked ReLU) | Mul, Add with the BN folded to a per-channel scale γ·invstd and shift β − mean·γ·invstd; Add of the residual; Relu, and for a mask with both 0s and 1s Where(mask, Relu(z), z) with the mask as a BOOL [1, c, h, w] initializer (exact: each element is relu(z) or z) |
//! | add | Add |
//! | global average pool | GlobalAveragePool, Flatten |
//! | linear | Gemm (transB = 1) |
//!
//! The graph's input is `input`, float [batch, 3, s, s] of [0, 1] pixels (normalisation is
//! inside, as in rlnet), its output `logits` [batch, classes]; batch is dynamic. The weights
//! keep their rlnet names as initializers.

use super::onnx_proto::*;
use crate::autograd::{EntryId, GradMode, Graph, TraceNode, Traced, Var};
use crate::error::{Error, Result};
use crate::nn::{kept_count, Domain, Model, Pass};
use crate::tensor::Tensor;
use prost::Message;

/// ONNX IR version 8 (ONNX 1.10+), operator set 17.
const IR_VERSION: i64 = 8;
const OPSET: i64 = 17;

/// The ONNX model of `model`'s inference under `domain`'s BN set, encoded. The model must be
/// on the host.
pub fn export(model: &Model, domain: Domain) -> Result<Vec<u8>> {
    let s = model.config.input_size;
    let mut g = Graph::new(&model.store, GradMode::None);
    let x = g.input(Tensor::zeros(&[1, 3, s, s]), false);
    let out = model.forward(
        &mut g,
        x,
        Pass {
            domain,
            train: false,
        },
    );
    let mut w = Writer::new(model);
    for (i, node) in g.trace().into_iter().enumerate() {
        w.node(i, node, &g)?;
    }
    let logits = w.name(out.logits)?;
    // The last node's output takes the graph output's name.
    let last = w
        .nodes
        .iter_mut()
        .rev()
        .find(|n| n.output.contains(&logits))
        .ok_or_else(|| Error::Config("the forward pass produced no logits node".into()))?;
    last.output = vec!["logits".into()];
    let batch = || Dimension {
        value: Some(DimValue::DimParam("batch".into())),
    };
    let fixed = |v: usize| Dimension {
        value: Some(DimValue::DimValue(v as i64)),
    };
    let info = |name: &str, dims: Vec<Dimension>| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    };
    let cfg = &model.config;
    let bn = match domain {
        Domain::Clean => "clean",
        Domain::Aug => "aug",
        Domain::Adv => "adv",
    };
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: k.into(),
        value: v,
    };
    let proto = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "rlnet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} x{} under BN_{bn}: {} of {} ReLUs kept",
            cfg.arch.name(),
            cfg.width_mult,
            model.kept_relus(),
            model.total_relus()
        ),
        graph: Some(GraphProto {
            node: w.nodes,
            name: cfg.arch.name().into(),
            initializer: w.initializers,
            input: vec![info("input", vec![batch(), fixed(3), fixed(s), fixed(s)])],
            output: vec![info("logits", vec![batch(), fixed(cfg.num_classes)])],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: vec![
            meta("bn", bn.into()),
            meta("kept_relus", model.kept_relus().to_string()),
            meta("total_relus", model.total_relus().to_string()),
        ],
    };
    Ok(proto.encode_to_vec())
}

/// Builds the node and initializer lists while the trace is walked.
struct Writer<'m> {
    model: &'m Model,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// What each trace node's value is, by index.
    values: Vec<Value>,
}

/// A trace node's value in the ONNX graph: a named value, or a store entry that becomes an
/// initializer when a node first reads it (BN's γ and β are folded and never read).
enum Value {
    Named(String),
    Param { id: EntryId, written: bool },
}

fn float_tensor(name: String, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        name,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.iter().map(|&x| x as i64).collect(),
        r#type: ATTR_INTS,
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: ATTR_INT,
        ..Default::default()
    }
}

impl<'m> Writer<'m> {
    fn new(model: &'m Model) -> Self {
        Writer {
            model,
            nodes: Vec::new(),
            initializers: Vec::new(),
            values: Vec::new(),
        }
    }

    /// The ONNX name of `v`, writing its initializer on first use.
    fn name(&mut self, v: Var) -> Result<String> {
        match &mut self.values[v.index()] {
            Value::Named(n) => Ok(n.clone()),
            Value::Param { id, written } => {
                let e = self.model.store.entry(*id);
                if !*written {
                    *written = true;
                    let t = e.tensor.to_host()?;
                    let init = float_tensor(e.name.clone(), t.shape(), t.data());
                    self.initializers.push(init);
                }
                Ok(e.name.clone())
            }
        }
    }

    fn constant(&mut self, name: String, dims: &[usize], values: &[f32]) -> String {
        self.initializers
            .push(float_tensor(name.clone(), dims, values));
        name
    }

    /// Appends node `op` of inputs `inputs` with output `out`.
    fn op(&mut self, op: &str, inputs: Vec<String>, out: &str, attrs: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.into()],
            name: out.into(),
            op_type: op.into(),
            attribute: attrs,
        });
    }

    /// x · scale + shift with per-channel [1, c, 1, 1] constants; returns the output's name.
    fn affine(&mut self, at: &str, x: String, scale: &[f32], shift: &[f32]) -> String {
        let c = [1, scale.len(), 1, 1];
        let sc = self.constant(format!("{at}.scale"), &c, scale);
        let sh = self.constant(format!("{at}.shift"), &c, shift);
        let scaled = format!("{at}.scaled");
        self.op("Mul", vec![x, sc], &scaled, Vec::new());
        self.op("Add", vec![scaled, sh], at, Vec::new());
        at.into()
    }

    fn node(&mut self, i: usize, node: TraceNode<'_>, g: &Graph<'_>) -> Result<()> {
        let at = format!("t{i}");
        let value = match node {
            TraceNode::Input => Value::Named("input".into()),
            TraceNode::Param(id) => Value::Param { id, written: false },
            TraceNode::Op(None) => {
                return Err(Error::Config(format!(
                    "node {i} of the forward pass has no ONNX form (only inference ops export)"
                )))
            }
            TraceNode::Op(Some(op)) => Value::Named(self.traced(&at, op, g)?),
        };
        self.values.push(value);
        Ok(())
    }

    fn traced(&mut self, at: &str, op: Traced<'_>, g: &Graph<'_>) -> Result<String> {
        Ok(match op {
            Traced::ChannelAffine { x, scale, shift } => {
                let x = self.name(x)?;
                self.affine(at, x, scale, shift)
            }
            Traced::Conv { x, w, stride, pad } => {
                let k = g.value(w).shape()[2];
                let attrs = vec![
                    ints("kernel_shape", &[k, k]),
                    ints("strides", &[stride, stride]),
                    ints("pads", &[pad, pad, pad, pad]),
                ];
                let inputs = vec![self.name(x)?, self.name(w)?];
                self.op("Conv", inputs, at, attrs);
                at.into()
            }
            Traced::BnAct {
                x,
                residual,
                gamma,
                beta,
                mean,
                invstd,
                relu,
                mask,
            } => {
                let (gm, bt) = (g.value(gamma).to_host()?, g.value(beta).to_host()?);
                let (mean, invstd) = (mean.to_host()?, invstd.to_host()?);
                let scale: Vec<f32> = gm
                    .data()
                    .iter()
                    .zip(invstd.data())
                    .map(|(g, i)| g * i)
                    .collect();
                let shift: Vec<f32> = bt
                    .data()
                    .iter()
                    .zip(mean.data())
                    .zip(&scale)
                    .map(|((b, m), a)| b - m * a)
                    .collect();
                let xn = self.name(x)?;
                let mut z = self.affine(&format!("{at}.bn"), xn, &scale, &shift);
                if let Some(r) = residual {
                    let sum = format!("{at}.sum");
                    let r = self.name(r)?;
                    self.op("Add", vec![z, r], &sum, Vec::new());
                    z = sum;
                }
                if !relu {
                    return Ok(z);
                }
                let relu_out = format!("{at}.relu");
                let Some(id) = mask else {
                    self.op("Relu", vec![z], &relu_out, Vec::new());
                    return Ok(relu_out);
                };
                let (name, keep) = {
                    let e = self.model.store.entry(id);
                    (e.name.clone(), e.tensor.to_host()?)
                };
                let kept = kept_count(&keep);
                if kept == 0 {
                    // Every ReLU of the layer is linearised: the identity.
                    return Ok(z);
                }
                self.op("Relu", vec![z.clone()], &relu_out, Vec::new());
                if kept == keep.numel() {
                    return Ok(relu_out);
                }
                let xs = g.value(x).shape();
                self.initializers.push(TensorProto {
                    dims: vec![1, xs[1] as i64, xs[2] as i64, xs[3] as i64],
                    data_type: BOOL,
                    name: name.clone(),
                    raw_data: keep.data().iter().map(|&v| (v != 0.0) as u8).collect(),
                });
                self.op("Where", vec![name, relu_out, z], at, Vec::new());
                at.into()
            }
            Traced::Add { a, b } => {
                let inputs = vec![self.name(a)?, self.name(b)?];
                self.op("Add", inputs, at, Vec::new());
                at.into()
            }
            Traced::GlobalAvgPool { x } => {
                let pooled = format!("{at}.pooled");
                let x = self.name(x)?;
                self.op("GlobalAveragePool", vec![x], &pooled, Vec::new());
                self.op("Flatten", vec![pooled], at, vec![int("axis", 1)]);
                at.into()
            }
            Traced::Linear { x, w, b } => {
                let inputs = vec![self.name(x)?, self.name(w)?, self.name(b)?];
                self.op("Gemm", inputs, at, vec![int("transB", 1)]);
                at.into()
            }
        })
    }
}
