"""ADV's caption branch: `text_net.BertBinaryMapping` with txt_stru='cnn'."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bert import BertModel, BertShape
from .hashing import TEXT_SCALE, median_centred_tanh

KERNEL_SIZES = (1, 2, 3)  # fixed in the original


class BertBinaryMapping(nn.Module):
    """BERT last layer -> TextCNN (Conv2d(1, C, (K, hidden)), K=1,2,3, ReLU, max over time) -> mapping.

    Keys: `bert.*` (frozen BERT-base, saved in the checkpoint), `convs1.{0,1,2}.*`, `mapping.*`.
    The max-pool runs over all max_words positions, padding included, as in the original, so
    captions must always be padded to the same max_words.
    """

    def __init__(self, bert: BertShape, final_dims: int, cnn_channels: int = 512) -> None:
        super().__init__()
        self.bert = BertModel(bert)
        self.convs1 = nn.ModuleList(nn.Conv2d(1, cnn_channels, (k, bert.hidden_size)) for k in KERNEL_SIZES)
        self.mapping = nn.Linear(len(KERNEL_SIZES) * cnn_channels, final_dims)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(n, max_words) ids and mask -> relaxed codes in (-1, 1), (n, final_dims)."""
        words = self.bert(input_ids, attention_mask).unsqueeze(1)  # (n, 1, length, hidden)
        pooled = [F.relu(conv(words)).squeeze(3).amax(dim=2) for conv in self.convs1]
        logits = self.mapping(torch.cat(pooled, dim=1))  # dropout: identity at evaluation
        return median_centred_tanh(logits.float().softmax(dim=-1), TEXT_SCALE)
