"""fometa: MAML, first-order MAML and Reptile (and Meta-SGD, ANIL, MAML++'s options, iMAML)
as pure, jit-compiled JAX functions.

Nichol, Achiam and Schulman (2018), "On First-Order Meta-Learning Algorithms".

The flat public API below is loaded on first use (PEP 562): `import fometa` alone imports
no JAX, so that the `fometa` command (`fometa.__main__`) can catch Ctrl-C before JAX's
import; `fometa.X` and `from fometa import X` work as with eager imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Any

__version__ = "0.1.0"

# Each public name and the module that defines it (modules themselves: their own path).
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("ALGORITHMS", "Rule", "fomaml_grad", "maml_grad", "meta_gradient",
                     "register_algorithm", "reptile_grad"), "fometa.algorithms"),
    **dict.fromkeys(("adapt", "as_optimizer", "inner_loop"), "fometa.inner"),
    **dict.fromkeys(("MetaLearner", "MetaState", "evaluate", "meta_learner", "reptile_outer"),
                    "fometa.learner"),
    **dict.fromkeys(("MiniImageNetCNN", "OmniglotCNN"), "fometa.convnets"),
    "MLP": "fometa.models",
    **{name: f"fometa.{name}" for name in ("learned_lr", "partition", "per_step")},
    **dict.fromkeys(("SineTasks", "Task", "distinct", "epoch_batches"), "fometa.tasks"),
    **dict.fromkeys(("FewShotTasks", "accuracies", "cross_entropy"),
                    "fometa.tasks.classification"),
    "mse": "fometa.tasks.sine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """A public name (imported from its module on first use), or a submodule."""
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = module if module.__name__ == f"fometa.{name}" else getattr(module, name)
    elif name.isidentifier() and importlib.util.find_spec(f"fometa.{name}") is not None:
        value = importlib.import_module(f"fometa.{name}")
    else:
        raise AttributeError(f"module 'fometa' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *(m.name for m in pkgutil.iter_modules(__path__))})
