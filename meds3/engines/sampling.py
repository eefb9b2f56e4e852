"""Per-row token sampling and stop-string detection (transformers backend).

Every sample owns a ``torch.Generator`` seeded from its request's seed and its index, so a
seeded request draws the same tokens whichever batch it lands in and however ``n`` is split.
"""

from __future__ import annotations

from typing import Sequence

import torch


def sample_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """Draw one token per row.

    Args:
        logits: ``[rows, vocab]`` float logits.
        temperature: ``[rows]``; rows at 0 take the argmax.
        top_p: ``[rows]`` nucleus mass; 1 keeps the whole vocabulary.
        generators: one generator per row (on the logits' device).

    Returns:
        ``[rows]`` long token ids.
    """
    logits = logits.float()
    greedy = temperature <= 0
    sampled = torch.nonzero(~greedy).flatten().tolist()
    if len(sampled) < len(temperature):
        out = logits.argmax(dim=-1)
    else:  # every row samples: skip the argmax pass over the vocabulary
        out = torch.empty(len(temperature), dtype=torch.long, device=logits.device)
    if not sampled:
        return out
    idx = torch.tensor(sampled, device=logits.device)
    rows = logits if len(sampled) == len(temperature) else logits[idx]
    probs = (rows / temperature[idx, None]).softmax(dim=-1)
    p = top_p[idx]
    order = None
    if bool((p < 1).any()):
        probs, order = _nucleus(probs, p)
    # Inverse-CDF sampling with one uniform per row from the row's own generator: the same
    # draw as multinomial, ~100x cheaper per row than torch.multinomial over a 49k vocabulary.
    cdf = probs.cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=generators[r], device=logits.device) for r in sampled])
    pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)
    pick.clamp_(max=cdf.shape[1] - 1)
    if order is not None:
        pick = order.gather(1, pick)
    out[idx] = pick.flatten()
    return out


def _nucleus(probs: torch.Tensor, top_p: torch.Tensor):
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p`` (per row).

    Returns the kept probabilities in descending order and their token ids. Tries the top 64,
    then the top 1024 tokens (cheap), and sorts the whole vocabulary only when they hold too
    little mass for some row.
    """
    for k in (64, 1024):
        if k < probs.shape[1]:
            vals, order = probs.topk(k, dim=-1)
            if bool((vals.sum(dim=-1) >= top_p).all()):
                break
    else:
        vals, order = probs.sort(dim=-1, descending=True)
    # drop a token when the mass before it already reaches top_p (the first always stays)
    drop = vals.cumsum(dim=-1) - vals >= top_p[:, None]
    return vals.masked_fill(drop, 0.0), order


class StopChecker:
    """Finds stop strings in the text of a sample's generated tokens.

    Each step decodes only the last few tokens (enough to spell the longest stop string), so
    the check costs the same at token 10 and token 1000; a hit is then located exactly in the
    full decoded text.
    """

    def __init__(self, tokenizer, stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.window = max((len(s) for s in self.stops), default=0) + 4

    def hit(self, token_ids: Sequence[int]) -> bool:
        """Whether a stop string appears in the text of the last tokens of ``token_ids``."""
        if not self.stops:
            return False
        tail = self.tokenizer.decode(token_ids[-self.window :], skip_special_tokens=True)
        return any(s in tail for s in self.stops)

    def finish(self, text: str, keep: bool) -> tuple[str, str | None]:
        """Cut ``text`` at its earliest stop string.

        Args:
            text: the sample's full decoded text.
            keep: keep the stop string at the end of the text.

        Returns:
            ``(text, matched stop string or None)``.
        """
        best, match = len(text) + 1, None
        for s in self.stops:
            i = text.find(s)
            if 0 <= i < best:
                best, match = i, s
        if match is None:
            return text, None
        return text[: best + (len(match) if keep else 0)], match
