"""fometa: MAML, first-order MAML and Reptile (and Meta-SGD, ANIL, MAML++'s options, iMAML)
as pure, jit-compiled JAX functions.

Nichol, Achiam and Schulman (2018), "On First-Order Meta-Learning Algorithms".
"""

from fometa.algorithms import (ALGORITHMS, Rule, fomaml_grad, maml_grad, meta_gradient,
                               register_algorithm, reptile_grad)
from fometa.inner import adapt, as_optimizer, inner_loop
from fometa.learner import MetaLearner, MetaState, evaluate, meta_learner, reptile_outer
from fometa.convnets import MiniImageNetCNN, OmniglotCNN
from fometa.models import MLP
from fometa import learned_lr, partition, per_step
from fometa.tasks import SineTasks, Task, distinct, epoch_batches
from fometa.tasks.classification import FewShotTasks, accuracies, cross_entropy
from fometa.tasks.sine import mse

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS", "FewShotTasks", "MLP", "MetaLearner", "MetaState", "MiniImageNetCNN",
    "OmniglotCNN", "Rule", "accuracies", "cross_entropy", "learned_lr", "mse", "partition",
    "per_step",
    "SineTasks", "Task", "adapt",
    "as_optimizer", "distinct", "epoch_batches", "evaluate", "fomaml_grad", "inner_loop",
    "maml_grad",
    "meta_gradient", "meta_learner", "register_algorithm", "reptile_grad", "reptile_outer",
]
