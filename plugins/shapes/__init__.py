"""The shapes world, a built-in dataset family (``shapes:<name>``): a generated, offline test bed
of images, questions and captions. Three parts and the family:

- :mod:`.world`: scenes, questions, answers and captions, a pure function of (seed, task,
  split, index); nothing is drawn there;
- :mod:`.render`: a scene to pixels;
- :mod:`.corpus`: the word-level tokenizer, the closed vocabulary and the text-only corpus
  that the miniature zoo's language models are pretrained on;
- :mod:`.dataset`: fingerprinted datasets of those items and :class:`ShapesFamily`, the
  family's :class:`harness.datasets.DatasetFamily`.
"""

from harness.plugins.shapes.corpus import corpus, tokenize, vocabulary
from harness.plugins.shapes.dataset import (
    MAX_ITEMS,
    ShapesDataset,
    ShapesFamily,
    load_dataset,
    shapes_cache_dir,
)
from harness.plugins.shapes.render import render
from harness.plugins.shapes.world import (
    ANSWER_WORDS,
    BASE,
    CHOICES,
    COLORS,
    COUNTS,
    DEFAULT_ALIGN_MIX,
    DEFAULT_N,
    DIGITS,
    GENERATOR_VERSION,
    LIST_JOINER,
    NAMES,
    RELATION_PHRASE,
    SHAPES,
    SIDES,
    SIZE_WORDS,
    TASKS,
    TEMPLATES,
    BarChart,
    Glyph,
    Sample,
    Scene,
    ShapesParams,
    Thing,
    caption,
    extra_questions,
    sample,
)

__all__ = [
    "ANSWER_WORDS", "BASE", "CHOICES", "COLORS", "COUNTS", "DEFAULT_ALIGN_MIX", "DEFAULT_N", "DIGITS",
    "GENERATOR_VERSION", "LIST_JOINER", "MAX_ITEMS", "NAMES", "RELATION_PHRASE", "SHAPES", "SIDES",
    "SIZE_WORDS", "TASKS", "TEMPLATES", "BarChart", "Glyph", "Sample", "Scene", "ShapesDataset",
    "ShapesFamily", "ShapesParams", "Thing", "caption", "corpus", "extra_questions", "load_dataset",
    "render", "sample", "shapes_cache_dir", "tokenize", "vocabulary",
]
