"""VSRN's two encoders as torch modules, with the original parameter names.

Image side (the original `EncoderImagePrecompAttn`), per image of n regions:

    x = fc(regions)                         (n, D)
    x = l2norm(x)                           only if data_name != "f30k_precomp"
    x = Rs_GCN_4(...Rs_GCN_1(x))            region graph reasoning, on (D, n)
    x = l2norm(x)
    _, h = img_rnn(x)                       GRU over the regions; h[0] is the final state
    v = bn(h[0])                            only if data_name == "f30k_precomp"
    v = l2norm(v)                           unless no_imgnorm; abs() if use_abs

Text side (the original `EncoderText`): Embedding -> GRU(num_layers); the output at the
last valid position of each caption; l2norm; abs() if use_abs.

`l2norm` is VSRN's own: it divides by the 2-norm over dim 1 with no epsilon. On a
(batch, regions, D) tensor dim 1 is the REGION axis, so the two normalisations inside the
image encoder scale each feature channel across the regions (not each region vector). That
is what the published weights were trained with, so it is kept exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

F30K_BN_DATA_NAME = "f30k_precomp"  # the only data_name whose image encoder has `bn` and no first l2norm


def vsrn_l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| over dim 1, without epsilon (as the original)."""
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt()


class RsGCN(nn.Module):
    """One region-reasoning block (the original `Rs_GCN`): a non-local block over regions.

    On v (B, D, n): R = theta(v)^T phi(v) / n,  y = R g(v),  out = W(y) + v, where g, theta
    and phi are 1x1 convolutions to `inter_channels` and W is a 1x1 convolution back to D
    followed by BatchNorm1d (parameter names g, theta, phi, W.0, W.1 as in the checkpoints).
    """

    def __init__(self, in_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        self.g = nn.Conv1d(in_channels, inter_channels, kernel_size=1)
        self.W = nn.Sequential(nn.Conv1d(inter_channels, in_channels, kernel_size=1), nn.BatchNorm1d(in_channels))
        self.theta = nn.Conv1d(in_channels, inter_channels, kernel_size=1)
        self.phi = nn.Conv1d(in_channels, inter_channels, kernel_size=1)
        # The original starts each block as the identity: the BatchNorm's affine part is zero.
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        g_v = self.g(v).transpose(1, 2)  # (B, n, C)
        theta_v = self.theta(v).transpose(1, 2)  # (B, n, C)
        phi_v = self.phi(v)  # (B, C, n)
        relation = torch.matmul(theta_v, phi_v)  # (B, n, n)
        relation = relation / relation.shape[-1]
        y = torch.matmul(relation, g_v).transpose(1, 2).contiguous()  # (B, C, n)
        return self.W(y) + v


class ImageEncoder(nn.Module):
    """The original `EncoderImagePrecompAttn` (fc, Rs_GCN_1..4, img_rnn, and bn for Flickr30K)."""

    def __init__(
        self, img_dim: int, embed_size: int, data_name: str, *, use_abs: bool = False, no_imgnorm: bool = False
    ) -> None:
        super().__init__()
        self.embed_size = embed_size
        self.data_name = data_name
        self.use_abs = use_abs
        self.no_imgnorm = no_imgnorm
        self.fc = nn.Linear(img_dim, embed_size)
        self.img_rnn = nn.GRU(embed_size, embed_size, 1, batch_first=True)
        self.Rs_GCN_1 = RsGCN(embed_size, embed_size)
        self.Rs_GCN_2 = RsGCN(embed_size, embed_size)
        self.Rs_GCN_3 = RsGCN(embed_size, embed_size)
        self.Rs_GCN_4 = RsGCN(embed_size, embed_size)
        self.has_bn = data_name == F30K_BN_DATA_NAME
        if self.has_bn:
            self.bn = nn.BatchNorm1d(embed_size)
        # Xavier-uniform fc with zero bias, as the original init_weights
        bound = math.sqrt(6.0) / math.sqrt(img_dim + embed_size)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def region_features(self, regions: torch.Tensor) -> torch.Tensor:
        """The reasoned region features fed to img_rnn, (B, n, D) (also the caption branch's input)."""
        x = self.fc(regions)
        if not self.has_bn:
            x = vsrn_l2norm(x)  # over the region axis
        x = x.transpose(1, 2)  # (B, D, n)
        for block in (self.Rs_GCN_1, self.Rs_GCN_2, self.Rs_GCN_3, self.Rs_GCN_4):
            x = block(x)
        return vsrn_l2norm(x.transpose(1, 2))  # over the region axis again

    def forward(self, regions: torch.Tensor) -> torch.Tensor:
        _, hidden = self.img_rnn(self.region_features(regions))
        features = hidden[0]
        if self.has_bn:
            features = self.bn(features)
        if not self.no_imgnorm:
            features = vsrn_l2norm(features)
        if self.use_abs:
            features = features.abs()
        return features


class TextEncoder(nn.Module):
    """The original `EncoderText`: word embedding, GRU, the output at each caption's last word."""

    def __init__(
        self, vocab_size: int, word_dim: int, embed_size: int, num_layers: int, *, use_abs: bool = False
    ) -> None:
        super().__init__()
        self.embed_size = embed_size
        self.use_abs = use_abs
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) padded after each caption; lengths (B,) >= 1 on ids' device."""
        # A unidirectional GRU's output at step t does not depend on later (padding) steps, so
        # running it over the padded batch and gathering step len-1 equals the original's
        # packed sequence; no sorting by length is needed.
        out, _ = self.rnn(self.embed(ids))
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        features = vsrn_l2norm(out.gather(1, last).squeeze(1))
        if self.use_abs:
            features = features.abs()
        return features
