"""LLaVA-style VLM assembly: vision encoder -> projector -> language model.

The prompt's ``<image>`` placeholder is replaced by the projected patch tokens. The loss is
taken on the answer tokens (and EOS) only: a frozen, randomly initialised LLM cannot learn to
emit EOS from prompt tokens, and prompt loss would reward memorising the question templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
PROJECTOR_PATTERN = re.compile(r"^(ln_)?mlp(\d+)x_gelu$")


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """LLaVA's projector builder: ``linear``, ``mlp<N>x_gelu``; ``ln_mlp<N>x_gelu`` puts a
    LayerNorm on the encoder features first (InternVL-style)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    match = PROJECTOR_PATTERN.match(kind)
    if not match:
        raise ValueError(f"unknown projector {kind!r}: use linear, mlp<N>x_gelu or ln_mlp<N>x_gelu")
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if match.group(1) else []
    layers.append(nn.Linear(in_dim, out_dim))
    for _ in range(1, int(match.group(2))):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


@dataclass
class Conversation:
    """One training or evaluation example: an image, the user's turn (with <image>), the answer."""

    prompt: str
    answer: str | None = None


def format_prompt(prompt: str) -> str:
    """The one chat template used for every LLM (LLaVA v1's plain USER/ASSISTANT form)."""
    if IMAGE_TOKEN not in prompt:
        prompt = f"{IMAGE_TOKEN}\n{prompt}"
    return f"USER: {prompt} ASSISTANT:"


class VLM(nn.Module):
    """Encoder + projector + LLM. The encoder and LLM are the loaded components' modules."""

    def __init__(self, encoder, language_model, projector: str = "mlp2x_gelu",
                 normalize_features: bool = True):
        super().__init__()
        self.encoder = encoder
        self.lm = language_model
        self.tokenizer = language_model.tokenizer
        self.normalize_features = normalize_features
        self.projector = build_projector(projector, encoder.hidden_size, language_model.hidden_size)
        # per-(token position, feature) mean and std of the encoder's output, estimated on
        # alignment images before training (see calibrate); saved with the checkpoint
        self.register_buffer("feature_mean", torch.zeros(encoder.num_tokens, encoder.hidden_size))
        self.register_buffer("feature_std", torch.ones(encoder.num_tokens, encoder.hidden_size))
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == self.tokenizer.unk_token_id:
            self.tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
            self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
            if self.image_token_id >= language_model.model.get_input_embeddings().num_embeddings:
                language_model.model.resize_token_embeddings(len(self.tokenizer))

    @property
    def llm(self) -> nn.Module:
        return self.lm.model

    @torch.no_grad()
    def calibrate(self, pixel_values: torch.Tensor | None = None, *,
                  features: torch.Tensor | None = None) -> None:
        """Estimate the feature standardisation from a batch of alignment images.

        Encoders' feature scales differ by 10x and, unnormalised, the scale alone decides the
        ranking through optimisation (measured on this test bed). Standardising each (token
        position, feature) over images also removes what is constant across images (position
        embeddings, padding effects), which otherwise dwarfs the image content in the small
        encoders' tokens.
        """
        feats = (self.encoder(pixel_values) if features is None else features).float()
        self.feature_mean.copy_(feats.mean(dim=0))
        self.feature_std.copy_(feats.std(dim=0).clamp_min(1e-3 * feats.std().item() + 1e-12))

    def image_features(self, pixel_values: torch.Tensor | None = None, *,
                       features: torch.Tensor | None = None) -> torch.Tensor:
        """Projected image tokens, from pixels or from precomputed (frozen) encoder features."""
        feats = self.encoder(pixel_values) if features is None else features
        if self.normalize_features:
            feats = (feats.float() - self.feature_mean) / self.feature_std
        return self.projector(feats.to(self.projector_dtype))

    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def build_inputs(self, pixel_values: torch.Tensor | None, conversations: list[Conversation],
                     *, with_answer: bool, features: torch.Tensor | None = None
                     ) -> dict[str, torch.Tensor]:
        """Token embeddings with image tokens spliced in; right-padded for training,
        left-padded for generation. Labels cover the answer and EOS only."""
        image_embeds = self.image_features(pixel_values, features=features)
        embed = self.llm.get_input_embeddings()
        device = image_embeds.device
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        eos = self.tokenizer.eos_token_id
        seqs, labels = [], []
        for i, conv in enumerate(conversations):
            before, _, after = format_prompt(conv.prompt).partition(IMAGE_TOKEN)
            ids_before = torch.tensor(bos + self._tokenize(before), dtype=torch.long, device=device)
            ids_after = self._tokenize(after)
            answer_ids = []
            if with_answer:
                answer_ids = self._tokenize(" " + conv.answer) + [eos]
            ids_tail = torch.tensor(ids_after + answer_ids, dtype=torch.long, device=device)
            parts = [embed(ids_before), image_embeds[i].to(embed.weight.dtype), embed(ids_tail)]
            seqs.append(torch.cat(parts, dim=0))
            n_prompt = len(ids_before) + image_embeds.shape[1] + len(ids_after)
            label = torch.full((seqs[-1].shape[0],), IGNORE_INDEX, dtype=torch.long, device=device)
            if answer_ids:
                label[n_prompt:] = torch.tensor(answer_ids, device=device)
            labels.append(label)
        return self._pad(seqs, labels, left=not with_answer)

    def _pad(self, seqs, labels, *, left: bool) -> dict[str, torch.Tensor]:
        width = max(s.shape[0] for s in seqs)
        dim = seqs[0].shape[1]
        batch = len(seqs)
        device, dtype = seqs[0].device, seqs[0].dtype
        embeds = torch.zeros(batch, width, dim, dtype=dtype, device=device)
        mask = torch.zeros(batch, width, dtype=torch.long, device=device)
        out_labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long, device=device)
        for i, (seq, label) in enumerate(zip(seqs, labels)):
            n = seq.shape[0]
            sl = slice(width - n, width) if left else slice(0, n)
            embeds[i, sl] = seq
            mask[i, sl] = 1
            out_labels[i, sl] = label
        return {"inputs_embeds": embeds, "attention_mask": mask, "labels": out_labels}

    def loss(self, pixel_values: torch.Tensor | None, conversations: list[Conversation], *,
             features: torch.Tensor | None = None) -> torch.Tensor:
        inputs = self.build_inputs(pixel_values, conversations, with_answer=True, features=features)
        return self.llm(**inputs).loss

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, prompts: list[str], max_new_tokens: int = 8,
                 until: list[str] | None = None) -> list[str]:
        """Greedy decoding from the spliced embeddings (no sampling: scores are reproducible)."""
        inputs = self.build_inputs(pixel_values, [Conversation(p) for p in prompts], with_answer=False)
        embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
        # An explicit loop with explicit position ids: left padding must not shift positions,
        # and models differ in whether generate() derives them from the attention mask.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        eos = self.tokenizer.eos_token_id
        embed = self.llm.get_input_embeddings()
        past, generated = None, []
        done = torch.zeros(len(prompts), dtype=torch.bool, device=embeds.device)
        for _ in range(max_new_tokens):
            out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                           past_key_values=past, use_cache=True)
            past = out.past_key_values
            next_ids = out.logits[:, -1].argmax(-1)
            next_ids = torch.where(done, torch.full_like(next_ids, eos), next_ids)
            generated.append(next_ids)
            done |= next_ids == eos
            if bool(done.all()):
                break
            embeds = embed(next_ids)[:, None]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
        out = torch.stack(generated, dim=1)
        texts = [self.tokenizer.decode(_until_eos(row, eos), skip_special_tokens=True) for row in out]
        results = []
        for text in texts:
            text = text.strip()
            for stop in until or []:
                if stop and stop in text:
                    text = text.split(stop, 1)[0]
            results.append(text.strip())
        return results

    @torch.no_grad()
    def answer_logprobs(self, pixel_values: torch.Tensor, prompts: list[str],
                        answers: list[str]) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of each answer (without EOS) and whether greedy decoding
        would produce it: what lmms-eval's ``loglikelihood`` requests need."""
        convs = [Conversation(p, a) for p, a in zip(prompts, answers)]
        inputs = self.build_inputs(pixel_values, convs, with_answer=True)
        labels = inputs.pop("labels")
        logits = self.llm(**inputs).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = labels[:, 1:]
        results = []
        for i in range(len(convs)):
            positions = (targets[i] != IGNORE_INDEX).nonzero().flatten()[:-1]  # drop EOS
            tokens = targets[i, positions]
            total = logprobs[i, positions, tokens].sum().item()
            greedy = bool((logprobs[i, positions].argmax(-1) == tokens).all().item())
            results.append((total, greedy))
        return results


def _until_eos(ids: torch.Tensor, eos: int) -> list[int]:
    ids = ids.tolist()
    return ids[: ids.index(eos)] if eos in ids else ids
