#!/usr/bin/env python3
"""Runs an exported ONNX model with onnxruntime (CPU) on a float32 .npy batch.

    onnx_run.py MODEL.onnx INPUT.npy OUTPUT.npy

INPUT holds [n, 3, s, s] pixels in [0, 1] (the graph's `input`); OUTPUT gets its `logits`.
"""
import sys

import numpy as np
import onnxruntime as ort


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: onnx_run.py MODEL.onnx INPUT.npy OUTPUT.npy")
    model, inp, out = sys.argv[1:]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = np.load(inp).astype(np.float32)
    (logits,) = session.run(["logits"], {"input": x})
    np.save(out, logits.astype(np.float32))


if __name__ == "__main__":
    main()
