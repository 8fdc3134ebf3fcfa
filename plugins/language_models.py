"""Language-model families: hf (AutoModelForCausalLM) and tiny (random init from configs)."""

from harness.hookspecs import hookimpl

TINY_LLMS = ("llama", "qwen2", "mistral", "gemma", "phi3", "gpt2")


@hookimpl
def register_language_models(register):
    register("hf", "harness.language:load_hf", doc="AutoModelForCausalLM + AutoTokenizer by hub id or local path")
    register("tiny", "harness.language:load_tiny", names=TINY_LLMS, doc="random-init small causal LMs with a locally built tokenizer")
