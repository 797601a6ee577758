"""TensorBoard summaries of training, written by a callback from the values each step keeps in
`model.step_values` (dcgan_tf/model/gan.py), so the train step itself holds only the maths.

TensorBoard groups tags by the part before the first "/" (Time Series view, Scalars tab): here the
losses ("loss/"), D's outputs as probabilities ("probability/": the means D(x) and D(G(z)) and their
histograms) and the quality measurements ("eval/", dcgan_tf/quality/evaluate.py) each form one group;
G's input z keeps its own. Every tag ends in the original program's name, so a script that looks for
`d_loss` finds `loss/d_loss` by its suffix. The Time Series view opens only the first two groups in
tag order (capitals first): the names put eval and the losses before D's outputs and z.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf
from tensorboard.plugins.scalar import metadata as scalar_metadata


SCALAR_TAGS = {"d_loss": "loss/d_loss", "d_loss_real": "loss/d_loss_real", "d_loss_fake": "loss/d_loss_fake",
               "g_loss": "loss/g_loss", "d_x": "probability/d_x", "d_g_z": "probability/d_g_z",
               # The adaptive R1 penalty's weight and DiffAugment's probability, when a run has them.
               "r1_weight": "loss/r1_weight", "augment_p": "loss/augment_p"}
# Histograms of G's input z, D(x) and D(G(z)) ("d" and "d_", as the original named them).
HISTOGRAM_TAGS = {"z": "z", "d_x": "probability/d", "d_g_z": "probability/d_"}
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None).SerializeToString()


def _value(variable):
    return variable.value if hasattr(variable, "value") else variable


class Summaries(keras.callbacks.Callback):
    """Writes every step's values as scalars (one point per step, whatever steps_per_execution is) and,
    when an execution ends on a multiple of `histogram_every` steps (as the sample grids do),
    histograms of that step's z, D(x) and D(G(z)).

    The scalars are written in batches, by one compiled call before the model's rows of kept steps
    would run out, after the first execution and at the end of training, so that writing
    them costs next to nothing per step; the summary writer buffers its events anyway."""

    def __init__(self, summary_writer, histogram_every: int):
        super().__init__()
        self.summary_writer, self.histogram_every = summary_writer, max(1, int(histogram_every))
        self._write_rows = self._write_histograms = None
        self._written = self._started = 0  # The last step whose scalars are written; the first step - 1.

    def on_train_begin(self, logs=None):
        if self._write_rows is None:
            # Partials, not bound methods: TensorFlow counts retracings per function's code, so each new
            # Summaries (one per fit in a process that trains several runs) would add to one count and,
            # from the fifth, warn of "excessive retracing"; a partial is counted by itself.
            self._write_rows = tf.function(functools.partial(Summaries._rows, self), autograph=False)
            self._write_histograms = tf.function(functools.partial(Summaries._histograms, self), autograph=False)
        self._written = self._started = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.histogram_every == 0:
            self._write_histograms()
        # After the first execution (so that tracing the write lands next to tracing the step, not
        # later) and before the next execution would overwrite rows not yet written.
        if self._written == self._started or (
                step - self._written > self.model.step_values.capacity - self.model.steps_per_execution):
            self._flush(step)

    def on_train_end(self, logs=None):
        self._flush(self._step())

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.step))

    def _flush(self, step: int) -> None:
        if step > self._written:
            self._write_rows(tf.constant(self._written, tf.int64), tf.constant(step, tf.int64))
            self._written = step

    def _rows(self, written, last):
        kept = self.model.step_values

        def write_step(step):
            index = (step - 1) % kept.capacity
            with tf.summary.record_if(kept.steps[index] == step):
                row = kept.rows[index]
                for i, name in enumerate(kept.names):
                    # tf.summary.scalar's write, with the tag as given (the loop's name scope left out).
                    tf.summary.write(SCALAR_TAGS[name], row[i], step=step, metadata=_SCALAR_METADATA)
            return step + 1

        with self.summary_writer.as_default():
            tf.while_loop(lambda step: step <= last, write_step, [tf.maximum(written + 1, last - kept.capacity + 1)])

    def _histograms(self):
        kept = self.model.step_values
        with self.summary_writer.as_default(step=_value(self.model.step)):
            tf.summary.histogram(HISTOGRAM_TAGS["z"], kept.z)
            tf.summary.histogram(HISTOGRAM_TAGS["d_x"], kept.d_x)
            tf.summary.histogram(HISTOGRAM_TAGS["d_g_z"], kept.d_g_z)
