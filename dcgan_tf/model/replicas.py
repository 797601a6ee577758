"""What the train step needs to run under a tf.distribute strategy, from inside the step: which rows
of a globally drawn tensor are this replica's, and the cross-replica mean and gather of its values.
Outside a strategy (one replica) each is the identity. Also the step's logs in the form `fit` reduces
across workers (step_logs) and the agreement of a cluster's workers on the step to stop after
(StopAgreement). Choosing and building the strategy is the training side's
(dcgan_tf/training/distribute.py)."""

from __future__ import annotations

import tensorflow as tf


def replica_slice(global_tensor, batch_size):
    """This replica's rows [r * batch_size, (r + 1) * batch_size) of a tensor drawn for the global batch
    (the whole tensor outside a distribution strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return global_tensor
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * batch_size
    return global_tensor[start:start + batch_size]


def num_replicas() -> int:
    """Replicas of the current replica context (1 outside a strategy)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def all_mean(values: dict) -> dict:
    """The replicas' mean of each scalar in `values` (the values themselves on one replica). Every
    replica (and worker) must call it, whether or not it writes summaries."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    names = sorted(values)
    reduced = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.cast(values[n], tf.float32) for n in names])
    return dict(zip(names, reduced))


def all_gather(tensor):
    """The replicas' `tensor`s concatenated along axis 0 (the tensor itself on one replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensor
    return context.all_gather(tensor, axis=0)


def across_workers() -> bool:
    """Whether the strategy in scope spans several workers (MultiWorkerMirroredStrategy)."""
    return isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)


def step_logs(logs: dict) -> dict:
    """A train step's logs as `fit` can reduce them: under MultiWorkerMirroredStrategy Keras averages
    step outputs over axis 0 across workers, so scalars travel as [1]-vectors there."""
    if not across_workers():
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


class StopAgreement:
    """When `fit` ends: after the step in which its model's `stop_training` turned true.

    One process stops at once (`request()` is agreed straight away). The workers of a multiworker
    cluster must all end after the same step, since each later step and the final checkpoint run
    collectives that every worker joins, while a stop is asked for on one of them (a signal, a closed
    output pipe). There a request only marks this worker, the next step sums the marks of all workers
    (`agree()`, called inside the step by every worker), and `agreed` turns true on all of them after
    that same step. A request not yet agreed when a `fit` ends stays pending into the next (a run
    resumed mid-epoch trains in two). Not part of checkpoints.

    A request `save=False` (a worker that cannot write: a failed write on the chief) also tells every
    worker to save no checkpoint once the stop is agreed (`saves`): saving runs collectives that all
    workers join, so the others would wait for the chief's save, which it skips.

    Requests come from signal handlers and callbacks at any moment, also while the step is being
    traced: the variables are read and set eagerly (tf.init_scope), never as ops of a traced graph."""

    # A request's mark: 1, or this where the worker cannot save (above any sum of plain marks).
    WITHOUT_SAVING = 1024.0

    def __init__(self, across_workers: bool = False):
        self.across_workers = across_workers
        self._agreed = False  # One process: no variables, no collective.
        self._without_saving = False
        if across_workers:
            def variable(name):
                # Every replica holds the same value; the first replica's assignment counts.
                return tf.Variable(0.0, trainable=False, name=name,
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

            self._requested_here, self._agreed_sum = variable("stop_requested"), variable("stop_agreed")

    def request(self, save: bool = True) -> None:
        if not self.across_workers:
            self._agreed = True
            self._without_saving = self._without_saving or not save
            return
        with tf.init_scope():  # The larger mark stays: a later plain request keeps a request without saving.
            mark = 1.0 if save else self.WITHOUT_SAVING
            self._requested_here.assign(max(mark, float(self._requested_here.numpy())))

    def reset(self) -> None:
        """Forgets a stop that took effect (a new `fit` begins); a pending request stays."""
        if not self.agreed:
            return
        self._agreed = self._without_saving = False
        if self.across_workers:
            with tf.init_scope():
                self._requested_here.assign(0.0)
                self._agreed_sum.assign(0.0)

    def agree(self) -> None:
        """Inside the train step, on every replica: sums the workers' requests."""
        context = tf.distribute.get_replica_context()
        if not self.across_workers or context is None:
            return
        self._agreed_sum.assign(context.all_reduce(tf.distribute.ReduceOp.SUM, self._requested_here.read_value()))

    @property
    def agreed(self) -> bool:
        if not self.across_workers:
            return self._agreed
        with tf.init_scope():
            return bool(self._agreed_sum.numpy() > 0)

    @property
    def saves(self) -> bool:
        """Whether checkpoints may still be saved: not once a stop without saving was asked for here or
        agreed by the workers."""
        if not self.across_workers:
            return not self._without_saving
        with tf.init_scope():
            return bool(max(self._agreed_sum.numpy(), self._requested_here.numpy()) < self.WITHOUT_SAVING)

    @property
    def requested_elsewhere(self) -> bool:
        """Agreed, though this worker asked for nothing: another worker stopped the training."""
        if not (self.across_workers and self.agreed):
            return False
        with tf.init_scope():
            return not self._requested_here.numpy() > 0
