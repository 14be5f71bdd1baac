//! Models leaving rlnet: the inference graph as ONNX (`onnx`, over the message subset in
//! `onnx_proto`).

pub mod onnx;
pub mod onnx_proto;
