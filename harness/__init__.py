"""harness: find the best vision-language model for a task without training every pair.

Importing this package is cheap on purpose: no torch, no lmms-eval. Heavy modules are
imported by the code paths that train or score.
"""

__version__ = "0.1.0"

from harness import _moved

_moved.install()  # the old import paths of modules that moved into plugins/ keep working
