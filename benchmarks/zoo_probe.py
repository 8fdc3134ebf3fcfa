"""Sanity of the mini: zoo: did each encoder learn something, and do encoders cluster by objective?

1. Linear probes: logistic regression (scikit-learn) on standardised [mean-pool, max-pool]
   features of each encoder's tokens, trained on shapes train items and scored on test items,
   for the target tasks. Raw pixels (4x4 cells of a 16x16 downsample) and the random-init
   control are the baselines: an encoder that learned nothing sits at the control's level.
2. Linear CKA between encoders on a mixed set of test images (every scene kind): mean-pooled,
   flattened tokens (spatial layout kept) and token-level (every token a sample).
3. Language models: held-out next-token loss on captions, plain ``question answer`` lines and
   chat-template lines, and what each answers greedily to a question in the VLM's template.

    python -m benchmarks.zoo_probe [--train 600] [--test 400] [--json out.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import common

TASKS = tuple(common.short(t) for t in common.TASKS)  # the shapes tasks' short names


def encoder_features(enc, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """Tokens [n, t, d] (float32) for uint8 images [n, H, W, 3], through the encoder's transform."""
    import torch
    from PIL import Image

    out = []
    with torch.no_grad():
        for lo in range(0, len(images), batch):
            x = torch.stack([enc.transform(Image.fromarray(a)) for a in images[lo:lo + batch]])
            out.append(enc(x).float().numpy())
    return np.concatenate(out)


def pixel_tokens(images: np.ndarray) -> np.ndarray:
    """A no-learning baseline: 16 tokens, each a 4x4 cell of a 16x16 downsample (48 values)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    small = F.adaptive_avg_pool2d(x, 16)  # [n, 3, 16, 16]
    from harness.plugins.zoo.train import patchify

    return patchify(small, 4).numpy()  # [n, 16, 48]


def pooled(tokens: np.ndarray) -> np.ndarray:
    return np.concatenate([tokens.mean(1), tokens.max(1)], axis=1)


def probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=3000, C=0.5)
    clf.fit(scaler.transform(train_x), train_y)
    return float((clf.predict(scaler.transform(test_x)) == np.asarray(test_y)).mean())


def task_images(task: str, split: str, n: int) -> tuple[np.ndarray, list[str]]:
    from harness.plugins.shapes import load_dataset

    ds = load_dataset(task, split=split, n=n, seed=0)
    items = list(ds)
    return np.stack([np.asarray(it.image.convert("RGB")) for it in items]), [it.answer for it in items]


def token_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA with every (image, token) a sample, in feature space: ||Y'X||^2 / (||X'X|| ||Y'Y||)."""
    a = x.reshape(-1, x.shape[-1]).astype(np.float64)
    b = y.reshape(-1, y.shape[-1]).astype(np.float64)
    a -= a.mean(0)
    b -= b.mean(0)
    cross = np.linalg.norm(b.T @ a) ** 2
    return float(cross / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def llm_losses(names, lines_per_kind: int = 400) -> dict:
    import torch
    from harness.plugins.zoo.recipes import corpus_lines, load_mini_llm

    kinds = {"captions": {"corpus": "captions"}, "qa": {"corpus": "qa", "chat": 0.0},
             "chat": {"corpus": "qa", "chat": 1.0}}
    texts = {k: corpus_lines({**v, "lines": lines_per_kind, "seed": 999}) for k, v in kinds.items()}
    prompt = "USER: how many objects are there? ASSISTANT:"
    out = {}
    for name in names:
        lm = load_mini_llm(name)
        tok = lm.tokenizer
        row = {}
        for k, lines in texts.items():
            total, count = 0.0, 0
            with torch.no_grad():
                for lo in range(0, len(lines), 100):
                    enc = tok(lines[lo:lo + 100], padding=True, return_tensors="pt")
                    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
                    loss = lm.model(**enc, labels=labels).loss
                    n = int((labels[:, 1:] != -100).sum())
                    total += float(loss) * n
                    count += n
            row[k] = total / count
        ids = tok(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            generated = lm.model.generate(ids, max_new_tokens=4, do_sample=False)
        row["answers"] = tok.decode(generated[0, ids.shape[1]:])
        out[name] = row
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = common.arg_parser(__doc__)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--cka-images", type=int, default=480)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-llm", action="store_true")
    parser.add_argument("--encoders", nargs="*", default=None, help="a subset of mini encoders")
    args = parser.parse_args()

    from harness.plugins.zoo.recipes import MINI_ENCODERS, MINI_LLMS, load_mini_encoder
    from harness.similarity import cka

    start = time.perf_counter()
    data = {t: (task_images(t, "train", args.train), task_images(t, "test", args.test)) for t in TASKS}
    per = args.cka_images // len(TASKS)
    mixed = np.concatenate([data[t][1][0][:per] for t in TASKS])

    names = ["pixels", *(args.encoders if args.encoders is not None else MINI_ENCODERS)]
    accuracy: dict[str, dict[str, float]] = {}
    mixed_tokens: dict[str, np.ndarray] = {}
    for name in names:
        if name == "pixels":
            feats = pixel_tokens
        else:
            enc = load_mini_encoder(name)
            feats = lambda imgs, enc=enc: encoder_features(enc, imgs)
        row = {}
        for t in TASKS:
            (tr_img, tr_y), (te_img, te_y) = data[t]
            row[t] = probe(pooled(feats(tr_img)), tr_y, pooled(feats(te_img)), te_y)
        accuracy[name] = row
        mixed_tokens[name] = feats(mixed)
        print(f"{name:16s} " + " ".join(f"{t} {row[t]:.3f}" for t in TASKS), flush=True)

    sims = {}
    for kind in ("mean", "flatten", "token"):
        m = np.eye(len(names))
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                b = names[j]
                if kind == "token":
                    v = token_cka(mixed_tokens[a], mixed_tokens[b])
                else:
                    v = cka(mixed_tokens[a], mixed_tokens[b], pool=kind)
                m[i, j] = m[j, i] = v
        sims[kind] = m
        print(f"\nlinear CKA ({kind})")
        print(" " * 16 + " ".join(f"{n[:7]:>7s}" for n in names))
        for i, a in enumerate(names):
            print(f"{a:16s}" + " ".join(f"{v:7.2f}" for v in m[i]))
        print("nearest: " + ", ".join(
            f"{a}->{names[int(np.argmax(np.where(np.arange(len(names)) == i, -1, m[i])))]}"
            for i, a in enumerate(names)))

    losses = {} if args.no_llm else llm_losses(MINI_LLMS)
    if losses:
        print("\nheld-out LM loss (nats/token); greedy answer to 'USER: how many objects are there? ASSISTANT:'")
        for name, row in losses.items():
            print(f"{name:18s} " + " ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "answers")
                  + f"  '{row['answers']}'")
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"accuracy": accuracy, "names": names,
                       "cka": {k: v.tolist() for k, v in sims.items()}, "llm_loss": losses}, f, indent=1)


if __name__ == "__main__":
    main()
