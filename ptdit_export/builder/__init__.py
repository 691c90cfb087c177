"""Build: ONNX -> an engine for one backend (TensorRT, ONNX Runtime), cached by a manifest."""
