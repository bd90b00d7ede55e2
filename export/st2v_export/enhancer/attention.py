"""Softmax attention for the enhancer UNet, exported as ONNX Runtime's fused MultiHeadAttention.

`MemoryEfficientCrossAttention` (modelscope `unet_v2v.py`) calls xformers, and splits the
batch above 16384 rows; both are replaced by one `softmax(q k^T / sqrt(d)) v` per call. The
top-level spatial self-attention of the real model has 90*160 = 14,400 tokens: a decomposed
MatMul/Softmax graph would materialise a 14,400 x 14,400 score matrix per head and frame
(about 1 G elements for 5 heads), so the TorchScript exporter emits
`com.microsoft::MultiHeadAttention` instead, which ORT runs with flash / memory-efficient
kernels on CUDA and with its own kernel on CPU. Eager PyTorch (and the dynamo exporter, which
ignores `symbolic`) computes the same maths with `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int):
    """q (B,S,H*d), k and v (B,L,H*d) -> (B,S,H*d), scale 1/sqrt(d), no mask, no bias."""
    batch, queries, width = q.shape

    def split_heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, t.shape[1], heads, width // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v))
    return out.transpose(1, 2).reshape(batch, queries, width)


class FusedMultiHeadAttention(torch.autograd.Function):
    """q (B,S,H*d), k and v (B,L,H*d) -> (B,S,H*d), scale 1/sqrt(d), no mask, no bias."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int):
        return multi_head_attention(q, k, v, heads)

    @staticmethod
    def symbolic(graph, q, k, v, heads: int):
        return graph.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads)


def cross_attention_forward(self, x, context=None, mask=None):
    """Drop-in `MemoryEfficientCrossAttention.forward` (the reference never passes a mask)."""
    if mask is not None:
        raise NotImplementedError("Vid2VidSDUNet attention takes no mask")
    context = x if context is None else context
    q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
    # The autograd Function exists for its ONNX symbolic; training (toy enhancer) needs gradients.
    if torch.onnx.is_in_onnx_export():
        return self.to_out(FusedMultiHeadAttention.apply(q, k, v, self.heads))
    return self.to_out(multi_head_attention(q, k, v, self.heads))
