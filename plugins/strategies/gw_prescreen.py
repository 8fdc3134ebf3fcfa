"""GW prescreen: rank every candidate by Gromov-Wasserstein distance, train only the best few.

"Rethinking Model Selection in VLM Through the Lens of Gromov-Wasserstein Distance": the better
an encoder's geometry on the target images matches an LLM's geometry on the paired texts, the
better the VLM they make once aligned. Every (encoder, LLM) pair gets
:func:`harness.plugins.similarity.gromov.gw_distance` between the two embeddings of the same items, with no
training; candidates are ranked by ascending GW and the top ``search.options.train_top`` are
trained at r = 1 to confirm.

Choices where the paper (abstract only, here) is vague:
- Items: ``prescreen.samples`` items of each target task's *train* split (an lmms target's
  validation split, else train, never test; alignment items when it has neither), as Mordal's
  clustering data.
- Encoder embedding per image: its tokens standardised per (token, feature) over the images
  and *flattened*, exactly Mordal's ``encoder-tokens`` features (same layer name, so the two
  strategies share the stored embedding when their sample counts agree). Token-level rather
  than mean-pooled: mean pooling mostly tracks the raw pixels' colour layout on this test bed.
- LLM embedding per item: the text ``question + " " + answer`` alone (no image, no chat
  template), BOS-prefixed as :class:`harness.vlm.VLM` tokenises, through the LLM; the last
  hidden state averaged over the text's tokens (BOS excluded: it is the same for every item).
- GW values are cached in the similarities table under ``similarity_key(metric="gw",
  a=encoder embedding key, b=LLM embedding key, config={entropic, epsilon})``, so changing the
  solver's options never reuses a value computed with other ones.
- The GW ranking is recorded in ``predictions`` (predictor ``gw``, metric ``gw``,
  predicted_score = the GW distance, *lower is better*): the rankings table holds one ranking
  per (run, task), and that one is the final ranking.
- Final ranking: the trained candidates by measured score (stage ``gw-trained``), then the
  others in GW order with no score (``predicted``, stage ``gw-rank``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from harness.strategy import RankedCandidate, SearchStrategy, best_first
from harness.suite import Candidate, Prescreen

# Mordal's name for the same features (harness.plugins.strategies.mordal.MordalSearch.cluster_encoders);
# a change to encoder_token_features must rename both.
ENCODER_LAYER = "encoder-tokens"
LLM_LAYER = "llm-text-qa-mean-last-hidden"
BATCH = 64


def paired_text(item) -> str:
    """The text paired with an item's image: its first question and answer, without ``<image>``."""
    from harness.datasets import IMAGE_TOKEN

    turns = item.conversations
    question = turns[0]["value"].replace(IMAGE_TOKEN, "").strip()
    answer = next((t["value"] for t in turns[1:] if t["from"] == "gpt"), item.answer or "")
    return f"{question} {answer}".strip()


def encoder_token_features(encoder, items: Sequence) -> np.ndarray:
    """[n, tokens * hidden] float32: the encoder's tokens on the items' images, standardised per
    (token, feature) over the images (removing what is constant across them, such as position
    embeddings) and flattened per image."""
    import torch

    encoder.eval()
    device = next(encoder.parameters()).device
    with torch.no_grad():
        out = torch.cat([encoder(torch.stack([encoder.transform(it.image)
                                              for it in items[i:i + BATCH]]).to(device)).cpu()
                         for i in range(0, len(items), BATCH)]).float()
    out = (out - out.mean(0)) / out.std(0).clamp_min(1e-6)
    return out.reshape(len(items), -1).numpy()


def llm_text_features(lm, texts: Sequence[str]) -> np.ndarray:
    """[n, hidden] float32: the LLM's last hidden state averaged over each text's tokens."""
    import torch

    tok = lm.tokenizer
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    model = lm.model
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), BATCH):
            ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts[i:i + BATCH]]
            width = len(bos) + max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            attention = torch.zeros((len(ids), width), dtype=torch.long)
            pooled = torch.zeros((len(ids), width))
            for row, x in enumerate(ids):  # right padding: positions start at 0 for every text
                input_ids[row, :len(bos) + len(x)] = torch.tensor(bos + x, dtype=torch.long)
                attention[row, :len(bos) + len(x)] = 1
                pooled[row, len(bos):len(bos) + len(x)] = 1
            hidden = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                           output_hidden_states=True).hidden_states[-1].float().cpu()
            weights = pooled.unsqueeze(-1)
            out.append((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0))
    return torch.cat(out).numpy()


def gw_order(values: Mapping[Candidate, float]) -> list[Candidate]:
    """Candidates by ascending GW distance; ties (and NaN, last) broken by name."""
    return sorted(values, key=lambda c: (math.isnan(values[c]), values[c] if not math.isnan(values[c])
                                         else 0.0, str(c)))


def _best_first(r: RankedCandidate) -> tuple:
    return best_first(r.score, r.candidate)


class GWPrescreen(SearchStrategy):
    name = "gw-prescreen"
    Options = Prescreen  # search.options: train_top, samples, entropic, epsilon

    def search(self) -> list[RankedCandidate]:
        cfg = self.options
        values = self.gw_values(self.targets[0].task)
        order = gw_order(values)
        self.insert("predictions", [{"encoder": c.vision_encoder, "llm": c.language_model,
                                     "task": self.objective, "metric": "gw", "sample_ratio": 1.0,
                                     "predicted_score": values[c], "predictor": "gw"}
                                    for c in order if not math.isnan(values[c])])
        top = order[:cfg.train_top]
        self.phase("train the GW top", total=len(top))
        trained = sorted((RankedCandidate(c, self.evaluate(c, 1.0), "measured",
                                          self._outcomes[(c, 1.0)].key, stage="gw-trained")
                          for c in top), key=_best_first)
        rest = [RankedCandidate(c, None, "predicted", sample_ratio=None, stage="gw-rank")
                for c in order[len(top):]]
        return trained + rest

    # -- the training-free part (also used by benchmarks/gw_correlation.py) -------------------

    def prescreen_data(self, task: str):
        """(dataset, items): ``prescreen.samples`` items of ``task`` (:meth:`feature_data`: a
        shapes task's train split, an lmms task's validation split, else alignment items)."""
        return self.feature_data(task, self.options.samples)

    def gw_values(self, task: str) -> dict[Candidate, float]:
        """GW distance of every candidate of the zoo on ``task``'s items; embeddings and values
        come from the store when there, else are computed and stored. Trains nothing."""
        from harness.plugins.similarity.gromov import gw_distance
        from harness.store import similarity_key
        from harness.trial import load_encoder, load_language_model

        cfg = self.options
        start = time.perf_counter()
        dataset, items = self.prescreen_data(task)
        n = cfg.samples
        all_reused = True

        def embed(kind, refs, loader, layer, compute):
            nonlocal all_reused
            self.phase(f"GW: {kind} embeddings", total=len(refs))
            out = {}
            for ref in refs:
                self.say(f"{kind} embedding: {ref}")
                entry, component = loader(ref)
                key, feats, reused = self._features(component.fingerprint, dataset, layer,
                                                    lambda c=component: compute(c), n, producer=entry)
                all_reused &= reused
                out[ref] = (component.fingerprint, key, feats)
                self._advance()
            return out

        texts = [paired_text(it) for it in items]
        encoders = embed("encoder", list(self.plan.encoders), load_encoder,
                         ENCODER_LAYER, lambda enc: encoder_token_features(enc, items))
        llms = embed("LLM", list(self.plan.llms), load_language_model,
                     LLM_LAYER, lambda lm: llm_text_features(lm, texts))

        config = {"entropic": cfg.entropic, "epsilon": cfg.epsilon if cfg.entropic else None}
        plugin, version = self._plugin()
        candidates = [Candidate(e, m) for e in encoders for m in llms]
        self.phase("GW: distances", total=len(candidates))
        values = {}
        for c in candidates:
            (e_fp, e_key, e_feats), (m_fp, m_key, m_feats) = encoders[c[0]], llms[c[1]]
            key = similarity_key(metric="gw", a=e_key, b=m_key, config=config)
            value = self.store.get_similarity(key)
            self.store.record_use(self.run_id, "similarity", key, reused=value is not None,
                                  phase=f"gw-prescreen@{task}")
            if value is None:
                all_reused = False
                self.say(f"GW: {c}")
                value = gw_distance(e_feats, m_feats, entropic=cfg.entropic, epsilon=cfg.epsilon)
                self.store.put_similarity(key, value, metric="gw", a=e_fp, b=m_fp,
                                          a_embedding=e_key, b_embedding=m_key, config=config,
                                          run_id=self.run_id, plugin=plugin,
                                          plugin_version=version)
            values[c] = float(value)
            self._advance()
        self.record_phase_cost(f"gw-prescreen@{task}", time.perf_counter() - start, 0, all_reused,
                               [v[1] for v in (*encoders.values(), *llms.values())])
        return values

    def _advance(self) -> None:
        self.progress.advance()
