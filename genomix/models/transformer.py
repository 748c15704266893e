"""A small pre-norm causal Transformer: the attention baseline that M2, Hyena and Mamba are measured against.

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (FlashAttention on
recent NVIDIA GPUs), positions through rotary embeddings (RoPE), the MLP is GELU. It is deliberately
plain -- the quadratic cost in sequence length is the thing being compared -- and shares the genomix
model contract (tokens, tied LM head, ``CausalLMOutput``, ``RangeError`` past ``max_seq_len``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import GenomixConfig, GenomixPreTrainedModel, LayerNormStackMixin
from .heads import check_pooling
from .norms import LayerNorm
from .registry import Family, register_family
from .tasks import CausalLMMixin, SequenceClassificationMixin


class TransformerConfig(GenomixConfig):
    """Width, depth, heads and MLP size of the baseline; ``rope_theta`` is the RoPE base; ``pooling`` and
    ``classifier_dropout`` configure the classification head."""

    model_type = "genomix-transformer"
    size_fields = GenomixConfig.size_fields + ("n_head",)

    def __init__(
        self,
        d_model: int = 128,
        n_layer: int = 2,
        n_head: int = 4,
        d_inner: int | None = None,
        max_seq_len: int = 1024,
        rope_theta: float = 10_000.0,
        dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        pooling: str = "mean",
        classifier_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if n_head >= 1 and (d_model % n_head or (d_model // n_head) % 2):  # n_head < 1: refused as a size
            raise ConfigError(f"d_model={d_model} must split into {n_head} heads of even size (RoPE)")
        check_pooling(pooling)
        self.d_model = d_model
        self.n_layer = n_layer
        self.n_head = n_head
        self.d_inner = d_inner if d_inner is not None else 4 * d_model
        self.rope_theta = rope_theta
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(max_seq_len=max_seq_len, **kwargs)

    @property
    def hidden_size(self) -> int:  # transformers' generic name (Trainer, pipelines)
        return self.d_model


def rope_tables(length: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (L, head_dim/2) for rotating query/key pairs by position × frequency."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of the last axis of (B, heads, L, head_dim) by the given angles."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with RoPE through SDPA; padding keys are masked out."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.d_model // config.n_head
        self.theta = config.rope_theta
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope_tables(L, self.head_dim, self.theta, x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        p = self.dropout if self.training else 0.0
        if key_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            allowed = causal & key_mask[:, None, None, :].bool()
            allowed = allowed | torch.eye(L, dtype=torch.bool, device=x.device)  # pads attend to themselves
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, d))


class TransformerBlock(nn.Module):
    """``x += attn(ln_1(x)); x += mlp(ln_2(x))`` with a GELU MLP; residual stream in fp32."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_inner),
            nn.GELU(approximate="tanh"),
            nn.Linear(config.d_inner, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x), key_mask)).float()
        return x + self.dropout(self.mlp(self.ln_2(x))).float()


class TransformerPreTrainedModel(GenomixPreTrainedModel):
    """Config class and GPT-2-style init (N(0, 0.02) linears/embeddings)."""

    config_class = TransformerConfig
    _no_split_modules = ["TransformerBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class TransformerModel(LayerNormStackMixin, TransformerPreTrainedModel):
    """Token embeddings, ``n_layer`` pre-norm blocks and a final LayerNorm; padding keys are masked out."""

    block_class = TransformerBlock

    def _block_mask(self, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The key mask itself, ``None`` when nothing is padded."""
        return None if attention_mask is None or bool(attention_mask.all()) else attention_mask


class TransformerForCausalLM(CausalLMMixin, TransformerPreTrainedModel):
    """Next-nucleotide LM head tied to the embeddings; labels shifted inside, -100 ignored."""

    backbone_class = TransformerModel


class TransformerForSequenceClassification(SequenceClassificationMixin, TransformerPreTrainedModel):
    """Backbone + padding-aware pooling (``config.pooling``) + linear classifier (``num_labels``): the
    attention baseline for fine-tuning comparisons."""

    backbone_class = TransformerModel


FAMILY = register_family(
    Family(
        model_type=TransformerConfig.model_type,
        config_class=TransformerConfig,
        models={
            "base": TransformerModel,
            "causal-lm": TransformerForCausalLM,
            "classification": TransformerForSequenceClassification,
        },
        default_task="causal-lm",
    )
)


__all__ = ["TransformerConfig", "TransformerForCausalLM", "TransformerForSequenceClassification", "TransformerModel"]
