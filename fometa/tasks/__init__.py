"""Task distributions."""

from fometa.tasks.base import Task
from fometa.tasks.sampling import distinct, epoch_batches
from fometa.tasks.sine import SineTasks

__all__ = ["Task", "SineTasks", "distinct", "epoch_batches"]
