"""Export: PyTorch components -> ONNX folders (Optimum layout) that every engine consumes."""
