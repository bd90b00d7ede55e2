"""PyTorch modules of the exported graphs: each wrapper's forward takes the role's inputs in
models/roles.json order and returns its outputs in that order."""
