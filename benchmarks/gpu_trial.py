"""Throughput of one training step at paper scale: tokens/s and MFU.

    python -m benchmarks.gpu_trial [--mode lora|projector] [--steps 5] [--batch 4] [--tiny]

Builds, from configs (random init, nothing downloaded), a CLIP-ViT-L/14-336-shape vision tower
and a 7B-Llama-shape LLM, assembles them with harness.vlm.VLM, prepares LoRA (r=128) or
projector-only training with harness.training.prepare_trainable, and times bf16 steps on CUDA.
MFU = achieved FLOP/s over the GPU's peak bf16 dense FLOP/s (--peak-tflops, default H100 SXM 989).
FLOPs per step follow the usual 6 N T for trained paths (2 N T forward + 4 N T backward for the
LLM, as activations' gradients flow through it even when frozen) plus 2 N T for the frozen
encoder's forward. --tiny runs the same code with small shapes on the CPU (a smoke test).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arg_parser


def build(tiny: bool, device: str):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if tiny:
        vcfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, image_size=56, patch_size=14)
        lcfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, vocab_size=32000)
    else:
        vcfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                num_attention_heads=16, image_size=336, patch_size=14,
                                projection_dim=768)
        lcfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                           max_position_embeddings=4096)
    return vcfg, lcfg, dtype


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--mode", choices=["lora", "projector"], default="lora")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()

    import tempfile

    import torch
    from harness.plugins.shapes import vocabulary
    from transformers import CLIPVisionModel, LlamaForCausalLM

    from harness.language import build_word_tokenizer
    from harness.language import load_hf as load_llm
    from harness.training import LoraSettings, TrainConfig, prepare_trainable
    from harness.vision import load_hf as load_encoder
    from harness.vlm import VLM

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    vcfg, lcfg, dtype = build(args.tiny, device)
    with tempfile.TemporaryDirectory() as tmp:
        # saved and loaded back so the run goes through the real loaders (hf:<path>)
        CLIPVisionModel(vcfg).to(dtype).save_pretrained(f"{tmp}/enc")
        LlamaForCausalLM(lcfg).to(dtype).save_pretrained(f"{tmp}/llm")
        build_word_tokenizer(vocabulary()).save_pretrained(f"{tmp}/llm")
        encoder = load_encoder(f"{tmp}/enc", dtype=dtype)
        lm = load_llm(f"{tmp}/llm", dtype=dtype)
    config = TrainConfig(llm="lora" if args.mode == "lora" else "frozen",
                         lora=LoraSettings(r=128, alpha=256), precision="bf16")
    vlm = prepare_trainable(VLM(encoder, lm, normalize_features=False), config).to(device)
    vlm.projector.to(dtype)
    params = [p for p in vlm.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4, fused=device == "cuda")
    size = vcfg.image_size
    pixels = torch.randn(args.batch, 3, size, size, device=device, dtype=dtype)
    n_img = (size // vcfg.patch_size) ** 2
    embed = vlm.llm.get_input_embeddings()
    text = torch.randint(5, 1000, (args.batch, args.text_tokens), device=device)

    def step():
        image = vlm.image_features(pixels)
        inputs = torch.cat([image.to(embed.weight.dtype), embed(text)], dim=1)
        labels = torch.cat([torch.full((args.batch, n_img), -100, device=device), text], dim=1)
        loss = vlm.llm(inputs_embeds=inputs, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = args.batch * (n_img + args.text_tokens)
    n_llm = sum(p.numel() for p in vlm.llm.parameters())
    n_enc = sum(p.numel() for p in vlm.encoder.parameters())
    flops = 6 * n_llm * tokens + 2 * n_enc * args.batch * n_img
    print(json.dumps({
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "mode": args.mode,
        "tiny": args.tiny, "batch": args.batch, "tokens_per_step": tokens,
        "seconds_per_step": round(seconds, 4), "tokens_per_s": round(tokens / seconds, 1),
        "mfu": round(flops / seconds / (args.peak_tflops * 1e12), 4) if device == "cuda" else None,
        "llm_params": n_llm, "encoder_params": n_enc,
        "trainable_params": sum(p.numel() for p in params),
    }))


if __name__ == "__main__":
    main()
