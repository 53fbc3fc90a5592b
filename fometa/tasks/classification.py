"""Few-shot classification episodes (N-way, K-shot), sampled on the device from uint8 arrays.

A split is one uint8 array [classes, examples, H, W, C] kept on the accelerator; episodes
(classes, examples, rotations, labels) are drawn inside the jitted step with `jax.random`,
so the host never feeds the training loop.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fometa.tasks.base import Task
from fometa.tasks.sampling import distinct, epoch_batches, independent_batches


def _rotate(images: jax.Array, r: jax.Array) -> jax.Array:
    """`images` [m, H, W, C] rotated by r * 90 degrees (r traced)."""
    return jax.lax.switch(r, [lambda x, k=k: jnp.rot90(x, k, axes=(1, 2)) for k in range(4)],
                          images)


def sample_episode(key: jax.Array, images: jax.Array, ways: int, per_class: int,
                   rotate: bool) -> tuple[jax.Array, jax.Array]:
    """`per_class` distinct examples of each of `ways` distinct classes.

    With `rotate`, each of the `4 * classes` (class, rotation by 0/90/180/270 degrees) pairs
    is a class of its own, as in the paper's Omniglot augmentation.
    Returns images [ways, per_class, H, W, C] in the split's dtype (uint8: a task's many
    inner-step batches stay 4x smaller than in float32), and labels int32
    [ways, per_class] (label i for the i-th sampled class).
    """
    num_classes, num_examples = images.shape[:2]
    total = num_classes * (4 if rotate else 1)
    if ways > total:
        raise ValueError(f"{ways} ways but the split has only {total} classes")
    if per_class > num_examples:
        raise ValueError(f"{per_class} examples per class but a class has only {num_examples}")
    kc, ke = jax.random.split(key)
    classes = distinct(kc, total, ways)
    picks = jax.vmap(lambda k: distinct(k, num_examples, per_class))(jax.random.split(ke, ways))
    cls = classes // 4 if rotate else classes
    x = images[cls[:, None], picks]  # [ways, per_class, H, W, C]
    if rotate:
        x = jax.vmap(_rotate)(x, (classes % 4).astype(jnp.int32))
    labels = jnp.broadcast_to(jnp.arange(ways, dtype=jnp.int32)[:, None], (ways, per_class))
    return x, labels


def _flat(x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    return {"x": x.reshape((-1,) + x.shape[2:]), "y": y.reshape(-1)}


class FewShotTasks(NamedTuple):
    """N-way K-shot tasks from a training and a test split.

    Training task: `train_shots` examples per class form the support pool, cycled in
    shuffled epochs through `inner_iters` minibatches of `inner_batch` (None: the whole
    pool each step); `queries` further examples per class form the query (0: no query, the
    task's `query` is None).
    Evaluation task (the paper's protocol): `shots` examples per class, `eval_inner_iters`
    minibatches of `eval_inner_batch`, and one query per class; its query dict also holds
    the support images as "context", for non-transductive prediction.

    The paper's code's Sec. 6 options: `replacement` draws each minibatch independently
    instead of cycling (training and evaluation); `tail_shots` keeps that many of a training
    pool's examples per class apart as the last minibatch (its FOML `--foml-tail`), the
    other `inner_iters - 1` minibatches coming from the rest, so the last step never sees
    an example of the earlier ones. The tail batch holds `ways * tail_shots` examples,
    which must equal `inner_batch`.
    """

    train_images: jax.Array
    test_images: jax.Array
    ways: int = 5
    shots: int = 1
    train_shots: int = 10
    queries: int = 1
    inner_iters: int = 5
    inner_batch: int | None = 10
    eval_inner_iters: int = 50
    eval_inner_batch: int | None = 5
    rotate_train: bool = True
    rotate_test: bool = False
    replacement: bool = False
    tail_shots: int | None = None

    @property
    def whole_support_batches(self) -> bool:
        """Every training minibatch holds the whole support pool, in another order (an
        epoch of `epoch_batches`, or all `distinct` examples with `replacement`); a tail
        batch is never the whole pool."""
        pool = self.ways * self.train_shots
        return self.tail_shots is None and self.inner_batch in (None, pool)

    def _batches(self, key, n, batch, iters):
        sample = independent_batches if self.replacement else epoch_batches
        return sample(key, n, batch or n, iters)

    def _task(self, key, images, rotate, pool, queries, iters, batch):
        ke, kb = jax.random.split(key)
        x, y = sample_episode(ke, images, self.ways, pool + queries, rotate)
        support = _flat(x[:, :pool], y[:, :pool])
        query = _flat(x[:, pool:], y[:, pool:]) if queries else None
        idx = self._batches(kb, self.ways * pool, batch, iters)
        return Task(jax.tree_util.tree_map(lambda a: a[idx], support), query), support

    def _tail_task(self, key) -> Task:
        """A training task whose last minibatch is its pool's last `tail_shots` per class."""
        ke, kb = jax.random.split(key)
        pool, tail = self.train_shots - self.tail_shots, self.tail_shots
        x, y = sample_episode(ke, self.train_images, self.ways, self.train_shots + self.queries,
                              self.rotate_train)
        head = _flat(x[:, :pool], y[:, :pool])
        last = _flat(x[:, pool:pool + tail], y[:, pool:pool + tail])
        idx = self._batches(kb, self.ways * pool, self.inner_batch, self.inner_iters - 1)
        support = jax.tree_util.tree_map(lambda h, t: jnp.concatenate([h[idx], t[None]]),
                                         head, last)
        query = _flat(x[:, pool + tail:], y[:, pool + tail:]) if self.queries else None
        return Task(support, query)

    def train_task(self, key: jax.Array) -> Task:
        if self.tail_shots is not None:
            return self._tail_task(key)
        task, _ = self._task(key, self.train_images, self.rotate_train, self.train_shots,
                             self.queries, self.inner_iters, self.inner_batch)
        return task

    def eval_task(self, key: jax.Array) -> Task:
        task, support = self._task(key, self.test_images, self.rotate_test, self.shots, 1,
                                   self.eval_inner_iters, self.eval_inner_batch)
        return task._replace(query={**task.query, "context": support["x"]})


def check_labels(logits: jax.Array, labels: jax.Array, what: str = "batch") -> None:
    """A ValueError unless `labels` are integers of the logits' shape without the class axis
    ([n] for logits [n, classes]: [n, 1] would broadcast to [n, n], one-hot labels are
    floats) and, where known before tracing, in [0, classes): out of range, optax's loss is
    NaN or, for -1, the last class's."""
    classes = jnp.shape(logits)[-1]
    if jnp.shape(labels) != jnp.shape(logits)[:-1]:
        raise ValueError(f"{what}['y'] has shape {jnp.shape(labels)}; the logits "
                         f"{jnp.shape(logits)} need labels of shape {jnp.shape(logits)[:-1]}")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise ValueError(f"{what}['y'] is {jnp.result_type(labels)}: labels must be integer "
                         f"class indices in [0, {classes})")
    if isinstance(labels, jax.core.Tracer) or not jnp.size(labels):
        return
    if isinstance(labels, jax.Array):
        with jax.ensure_compile_time_eval():  # labels closed over by a jit or scan: known
            low, high = int(jnp.min(labels)), int(jnp.max(labels))
    else:
        low, high = int(np.min(labels)), int(np.max(labels))
    if not (0 <= low and high < classes):
        raise ValueError(f"{what}['y'] holds labels from {low} to {high}: they must lie in "
                         f"[0, {classes})")


def cross_entropy(apply, params, batch: dict[str, jax.Array],
                  reduce: Callable[[jax.Array], jax.Array] = jnp.mean) -> jax.Array:
    """Softmax cross-entropy (optax's) of `apply(params, batch["x"])` [n, classes] against
    integer labels `batch["y"]` [n] in [0, classes), the per-example losses [n] reduced by
    `reduce` (default: their mean). Labels are checked where known before tracing; traced
    ones are not (out of range, the loss is NaN or another class's)."""
    logits = apply(params, batch["x"])
    check_labels(logits, batch["y"])
    return reduce(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))


def accuracies(apply, params, query: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Query accuracy in both of the paper's evaluation modes (labels as `cross_entropy`'s).

    transductive: all queries in one batch (batch norm statistics come from the queries);
    non-transductive ("accuracy"): each query predicted alone, in a batch with the support
    images (`query["context"]`), as the paper's code does.
    """
    logits = apply(params, query["x"])
    check_labels(logits, query["y"], "query")
    transductive = jnp.argmax(logits, -1) == query["y"]

    def alone(x):
        batch = jnp.concatenate([query["context"], x[None]])
        return jnp.argmax(apply(params, batch)[-1])

    single = jax.vmap(alone)(query["x"]) == query["y"]
    return {"accuracy": jnp.mean(single.astype(jnp.float32)),
            "accuracy_transductive": jnp.mean(transductive.astype(jnp.float32))}
