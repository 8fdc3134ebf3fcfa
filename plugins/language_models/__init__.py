"""Language-model families: hf (AutoModelForCausalLM), tiny (random init from configs) and mini
(the miniature pretrained zoo, :mod:`harness.plugins.zoo.recipes`)."""

from harness.hookspecs import hookimpl

TINY_LLMS = ("llama", "qwen2", "mistral", "gemma", "phi3", "gpt2")
# harness.plugins.zoo.recipes.MINI_LLMS, spelled out so registering imports no torch (a test keeps them equal)
MINI_LLMS = ("llama-mixed", "llama-captions", "llama-qa", "qwen2-chat", "qwen2-mixed", "gpt2-mixed",
             "mistral-qa-short")


def load_tiny(name: str, **options):
    """:func:`harness.language.load_tiny` with the bundled test bed's vocabulary (the shapes
    world's words) unless ``vocabulary`` is given."""
    from harness.plugins.shapes import vocabulary

    from harness.plugins.language_models.families import load_tiny as load

    return load(name, **{"vocabulary": vocabulary(), **options})


@hookimpl
def register_language_models(register):
    register("hf", "harness.plugins.language_models.families:load_hf", doc="AutoModelForCausalLM + AutoTokenizer by hub id or local path")
    register("tiny", "harness.plugins.language_models:load_tiny", names=TINY_LLMS, doc="random-init small causal LMs with a locally built tokenizer")
    register("mini", "harness.plugins.zoo.recipes:load_mini_llm", names=MINI_LLMS, doc="miniature causal LMs pretrained on templated shapes text (captions, QA, chat), word-level tokenizer")
