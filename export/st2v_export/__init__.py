"""Export of the StreamingT2V model set (PyTorch -> ONNX) with its manifest and tokenizer."""
