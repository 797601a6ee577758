"""DCGAN: the one training model. Knows nothing of any particular architecture.

Per batch: one discriminator update, then `g_steps` generator updates (the original used two, "so
that d_loss does not go to zero"), all with the same z. Losses are sigmoid cross-entropy on logits;
D's labels are 1 and 0. That is the original's step; each option below adds one thing to it, and is
off at its default:

- Labels: soft or swapped labels drawn per image (`real_label_range`, `fake_label_range`,
  `label_flip_prob`; losses.discriminator_labels).
- Augmentation (`augment`, DiffAugment, dcgan_tf/model/augment.py): D sees only augmented images,
  D(T(x)) and D(T(G(z))) in its update and D(T(G(z))) in every G update, fresh draws each call. With
  `augment_target` > 0 each augmentation reaches each image with a probability p that adapts as the
  R1 weight does (0 at the start).
- R1 (`r1_gamma`): D's loss adds gamma/2 * E[|grad_x D(T(x))|^2] at the real images
  (losses.r1_penalty). With `r1_target` > 0 its weight (0 to 1, times gamma) rises while D's mean
  probability for the real images is above the target and falls while below (losses.adapted_weight),
  so it acts only once D begins to memorise the frames and costs nothing before (a strategy with
  several replicas computes it always).
- LeCam (`lecam_weight`): a penalty against moving averages of D's own mean logits (the anchors, kept
  in checkpoints; losses.lecam_penalty).
- Consistency (`cr_weight`, with augmentation): bCR between D's logits for the images it saw (the
  real ones alone with `cr_images` "real") and for a second augmentation T'(.) of the same images
  (losses.consistency_penalty); with `cr_until` its weight fades out by that step (losses.faded_weight).
- Top-k (`g_topk` < 1): each G update learns only from the generated images D rates most real, a
  fraction shrinking by epoch from the whole batch to `g_topk` (losses.topk_count).
- `g_fresh_z`: each G update draws a z of its own instead of the D update's.
- Moving average (`ema_generator`): every step ends by moving its weights towards G's
  (dcgan_tf/model/ema.py); that average is what `sampler` returns.

Each step leaves its values in `step_values` for TensorBoard (written by dcgan_tf/training/summaries.py).
Under a multiworker strategy each step also sums the workers' stop requests, so that `stop_training`
(set by any callback) ends every worker after the same step (replicas.StopAgreement).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from dcgan_tf.model import augment as aug
from dcgan_tf.model import replicas
from dcgan_tf.model import ema
from dcgan_tf.model import losses
from dcgan_tf.model.latent import z_tensor
from dcgan_tf.config import CR_IMAGES

METRIC_NAMES = ("d_loss", "d_loss_real", "d_loss_fake", "g_loss", "d_x", "d_g_z")


def generated_images(generator, z, training=False):
    """The generator's images as float32, whatever precision it computes in: what leaves the model
    (grids, files, summaries) is always float32."""
    return tf.cast(generator(z, training=training), tf.float32)


class DCGAN(keras.Model):
    """Trains a generator/discriminator pair through `fit`. A model built with `discriminator` None
    only draws images (the generator side of a trained run, training/build.py's build_for_sampling).

    Metrics: d_loss = d_loss_real + d_loss_fake, g_loss (of the last G update), d_x = mean D(x) and
    d_g_z = mean D(G(z)) (both as probabilities). Each step also keeps its own values (not the
    epoch's means) and its z, D(x) and D(G(z)) in `step_values`, for the summaries callback.
    """

    def __init__(self, generator, discriminator, *, z_dim: int, z_dist: str = "uniform_signed",
                 g_steps: int = 2, seed=None, real_label_range=(1.0, 1.0), fake_label_range=(0.0, 0.0), label_flip_prob: float = 0.0,
                 augment=(), ema_generator=None, ema_decay: float = 0.0, ema_rampup: float = ema.DEFAULT_RAMPUP,
                 r1_gamma: float = 0.0, r1_target: float = 0.0, lecam_weight: float = 0.0,
                 cr_weight: float = 0.0, cr_until: int = 0, cr_images: str = "both", augment_target: float = 0.0,
                 g_topk: float = 1.0, g_fresh_z: bool = False, **kwargs):
        super().__init__(**kwargs)
        if g_steps < 1:
            raise ValueError(f"g_steps must be at least 1, got {g_steps}")
        self.generator = generator
        self.discriminator = discriminator
        # The moving average of G's weights (None: off); same architecture, never trained directly.
        self.ema_generator = ema_generator if ema_decay > 0 else None
        self.ema_decay, self.ema_rampup = float(ema_decay), float(ema_rampup)
        if self.ema_generator is not None:
            ema.copy_weights(self.ema_generator, generator)
        self.z_dim, self.z_dist, self.g_steps = z_dim, z_dist, g_steps
        self.r1_gamma = float(r1_gamma)
        self.r1_target = float(r1_target) if r1_gamma > 0 else 0.0
        # D's labels (losses.discriminator_labels): exactly 1 and 0 unless the tricks are asked for.
        self.real_label_range = tuple(float(v) for v in real_label_range)
        self.fake_label_range = tuple(float(v) for v in fake_label_range)
        self.label_flip_prob = float(label_flip_prob)
        self.z_seed = keras.random.SeedGenerator(seed, name="z_seed")
        self.augment = tuple(augment)
        # Adaptive DiffAugment (augment_target > 0): each augmentation reaches each image with a
        # probability that starts at 0 and follows D(x) as the R1 weight does; kept in checkpoints.
        self.augment_target = float(augment_target) if self.augment else 0.0
        if cr_weight > 0 and not self.augment:
            raise ValueError("cr_weight needs an augmentation policy: it compares two augmentations of each image")
        if cr_images not in CR_IMAGES:
            raise ValueError(f"cr_images must be {' or '.join(map(repr, CR_IMAGES))}, got {cr_images!r}")
        self.cr_weight, self.cr_until, self.cr_fakes = float(cr_weight), int(cr_until), cr_images == "both"
        if not 0 < g_topk <= 1:
            raise ValueError(f"g_topk must be in (0, 1], got {g_topk}")
        self.g_topk = float(g_topk)
        self.g_fresh_z = bool(g_fresh_z)
        # DiffAugment's own random state (seeded with z's seed + 1, another stream), so turning it on
        # or off leaves the z stream as it was.
        z_seed = seed if seed is not None else int(keras.ops.convert_to_numpy(self.z_seed.state)[0])
        self.augment_seed = keras.random.SeedGenerator(z_seed + 1, name="augment_seed")
        # Counters live in checkpoints so that a resumed run continues them.
        self.step = self._add_counter("step")
        self.epoch = self._add_counter("epoch")
        # Steps done in the epoch under way (the epoch counter's callback sets it back to 0 at each
        # epoch's end): a run resumed from a checkpoint saved mid-epoch finishes that epoch's batches.
        self.epoch_step = self._add_counter("epoch_step")
        # The first step after which a loss or a weight was NaN or Inf (0: none yet).
        self.nonfinite_step = self._add_counter("nonfinite_step")
        # The adaptive R1 penalty's weight (only with r1_target > 0): starts off, kept in checkpoints.
        self.r1_weight = self._add_adaptive_weight("r1_weight", self.r1_target)
        # LeCam's anchors [a_real, a_fake] (only with lecam_weight > 0): moving averages of D's mean logits.
        self.lecam_weight = float(lecam_weight)
        self.lecam_anchors = (self.add_weight(name="lecam_anchors", shape=(2,), dtype="float32",
                                              initializer="zeros", trainable=False,
                                              aggregation="only_first_replica")
                              if self.lecam_weight > 0 else None)
        self.augment_p = self._add_adaptive_weight("augment_p", self.augment_target)
        self.metric_names = (METRIC_NAMES + (("r1_weight",) if self.r1_weight is not None else ())
                             + (("augment_p",) if self.augment_p is not None else ()))
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        # What `stop_training` reads and sets: the workers of a multiworker cluster stop together.
        self.stop_agreement = replicas.StopAgreement(across_workers=replicas.across_workers())

    def _add_adaptive_weight(self, name, target: float):
        """A weight in [0, 1] that starts at 0 and follows D(x) against `target` (losses.adapted_weight),
        kept in checkpoints; None when `target` is 0 (not adaptive)."""
        if target <= 0:
            return None
        return self.add_weight(name=name, shape=(), dtype="float32", initializer="zeros", trainable=False,
                               aggregation="only_first_replica")

    def _add_counter(self, name):
        # Under tf.distribute every replica updates the counters alike; the first replica's update counts.
        return self.add_weight(name=name, shape=(), dtype="int64", initializer="zeros", trainable=False,
                               aggregation="only_first_replica")

    def compile(self, d_optimizer, g_optimizer, jit_compile=False, steps_per_execution=1, **kwargs):
        # With jit_compile only the updates (_updates) are compiled by XLA; the step around them
        # (collectives, metrics, step_values) is a plain graph.
        super().compile(jit_compile=False, steps_per_execution=steps_per_execution, **kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.step_values = StepValues(max(steps_per_execution, StepValues.ROWS), self.z_dim, self.metric_names)
        self._update_fn = tf.function(self._updates, jit_compile=True) if jit_compile else self._updates

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def stop_training(self) -> bool:
        """Whether `fit` ends after this step. Callbacks set it as for any Keras model; under a
        multiworker strategy a stop set on one worker takes effect on all of them after the next
        step (replicas.StopAgreement)."""
        agreement = getattr(self, "stop_agreement", None)
        return agreement is not None and agreement.agreed

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        agreement = getattr(self, "stop_agreement", None)
        if agreement is None:
            return  # keras.Model's own __init__, before this one's.
        if value:
            agreement.request()
        else:
            agreement.reset()

    def call(self, z, training=False):
        return generated_images(self.generator, z, training=training)

    def sampler(self, live: bool = False):
        """The generator that makes the run's images: the moving average of G's weights when the run
        keeps one (unless `live`), else G itself."""
        return self.generator if live or self.ema_generator is None else self.ema_generator

    def sampler_weights(self, live: bool = False) -> str:
        """Which weights `sampler(live)` holds, as exports record it: "live" (G's own, asked for),
        "average" (the moving average) or "generator" (G's own in a run that keeps no average)."""
        if live:
            return "live"
        return "generator" if self.ema_generator is None else "average"

    def reset_ema(self) -> None:
        """Starts the average afresh from G's weights (e.g. after loading a checkpoint without one)."""
        if self.ema_generator is not None:
            ema.copy_weights(self.ema_generator, self.generator)

    def build_optimizers(self):
        """Creates the optimizers' slots now, so a checkpoint can restore them before training."""
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        # The networks are built and the model has no weights of its own that need an input shape;
        # saying so keeps `fit` under a tf.distribute strategy from building it on an image batch.
        self.built = True

    def make_train_function(self, force=False):
        """Keras's train function, except on one device without a strategy at one step an execution:
        there `fit` calls the step traced as one graph function, without autograph. Keras traces the
        step inside a second function, through autograph, which this step does not need (its control
        flow is tf.cond and tf.while_loop); the single function makes the first step 0.6 s sooner
        (docs/speed.md, "Start-up"). Other inputs than a tf.data iterator still take Keras's function."""
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=True)
        if (self.steps_per_execution != 1 or self.run_eagerly or tf.distribute.has_strategy()
                or self.distribute_strategy is not tf.distribute.get_strategy()):
            return self.train_function
        keras_function = self.train_function

        @tf.function(autograph=False, reduce_retracing=True)
        def train_step_on_iterator(iterator):
            return self.train_step(iterator.get_next())

        def train_function(iterator):
            if isinstance(iterator, tf.data.Iterator):
                return train_step_on_iterator(iterator)
            return keras_function(iterator)

        self.train_function = train_function
        return self.train_function

    def train_step(self, real_images):
        values, z, d_x, d_g_z = self._update_fn(real_images)
        # The global batch's values, on every replica (all must join the collectives).
        values = replicas.all_mean(values)
        d_x, d_g_z = replicas.all_gather(d_x), replicas.all_gather(d_g_z)
        self._check_finite([values["d_loss"], values["g_loss"]] + self.discriminator.trainable_variables
                           + self.generator.trainable_variables)
        if self.r1_weight is not None:
            # Set from the global batch's D(x), so every replica holds the same weight.
            values["r1_weight"] = self.r1_weight.assign(
                losses.adapted_weight(self.r1_weight, values["d_x"], self.r1_target))
        if self.augment_p is not None:
            values["augment_p"] = self.augment_p.assign(
                losses.adapted_weight(self.augment_p, values["d_x"], self.augment_target))
        # Not metrics: the global batch's mean logits, which move LeCam's anchors (alike on every replica).
        real_logit, fake_logit = values.pop("real_logit", None), values.pop("fake_logit", None)
        if self.lecam_anchors is not None:
            self.lecam_anchors.assign(losses.moved_anchors(self.lecam_anchors, real_logit, fake_logit))
        step = self.step.value if hasattr(self.step, "value") else self.step
        self.step_values.keep(step, values, z=z, d_x=d_x, d_g_z=d_g_z)
        for name, value in values.items():
            self.trackers[name].update_state(value)
        self.stop_agreement.agree()
        return replicas.step_logs({name: tracker.result() for name, tracker in self.trackers.items()})

    def _updates(self, real_images):
        """One D update and g_steps G updates; (metric values, z, D(x), D(G(z)))."""
        batch_size = tf.shape(real_images)[0]
        replica_count = replicas.num_replicas()
        global_z, z = self._draw_z(batch_size, replica_count)

        # Discriminator: real images are 1, generated ones 0 (or soft / swapped labels, drawn per image
        # from the same random state as z, so they resume exactly too).
        with tf.GradientTape() as tape:
            fake_images = self.generator(z, training=True)
            real_logits, r1_penalty = self._discriminate_real(self._augment(real_images))
            fake_logits = self.discriminator(self._augment(fake_images), training=True)
            real_labels, fake_labels = self._labels(batch_size, replica_count)
            d_loss_real, d_loss_fake = losses.discriminator_losses(real_logits, fake_logits, real_labels,
                                                                   fake_labels)
            d_loss = d_loss_real + d_loss_fake
            d_objective = d_loss if r1_penalty is None else d_loss + 0.5 * self._r1_gamma_now() * r1_penalty
            if self.lecam_anchors is not None:
                d_objective += self.lecam_weight * losses.lecam_penalty(
                    real_logits, fake_logits, self.lecam_anchors[0], self.lecam_anchors[1])
            if self.cr_weight > 0:
                d_objective += self._consistency(real_images, real_logits, fake_images, fake_logits)
            # This replica's share, loss-scaled (a LossScaleOptimizer under mixed_float16; else the identity).
            scaled_d_loss = self.d_optimizer.scale_loss(_per_replica_share(d_objective, replica_count))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled_d_loss, d_vars), d_vars))

        # Generator, g_steps times with the same z (or each with its own): make D call the fakes real.
        g_vars = self.generator.trainable_variables

        def g_update():
            g_z = self._draw_z(batch_size, replica_count)[1] if self.g_fresh_z else z
            with tf.GradientTape() as tape:
                g_loss = losses.generator_loss(self._for_g(
                    self.discriminator(self._augment(self.generator(g_z, training=True)), training=True)))
                scaled_g_loss = self.g_optimizer.scale_loss(_per_replica_share(g_loss, replica_count))
            self.g_optimizer.apply_gradients(zip(tape.gradient(scaled_g_loss, g_vars), g_vars))
            return g_loss

        if self.g_steps > 1 and replica_count == 1 and tf.inside_function():
            # A graph loop: its body is traced once, not g_steps times (tracing is most of the time
            # before the first step). Several replicas keep the Python loop: their optimizer updates
            # synchronise through merge_call, which a graph loop cannot hold.
            g_loss = tf.while_loop(lambda i, _: i < self.g_steps, lambda i, _: (i + 1, g_update()),
                                   (tf.constant(0), tf.constant(0.0)))[1]
        else:
            for _ in range(self.g_steps):
                g_loss = g_update()

        if self.ema_generator is not None:
            ema.move_towards(self.ema_generator.trainable_variables, g_vars, ema.decay_at(self.step, self.ema_decay, self.ema_rampup))
            # Batch norm's statistics follow the averaged weights' own activations (see ema.py).
            self.ema_generator(z, training=True)
        self.step.assign_add(1)
        self.epoch_step.assign_add(1)
        d_x = tf.sigmoid(tf.cast(real_logits, tf.float32))
        d_g_z = tf.sigmoid(tf.cast(fake_logits, tf.float32))
        values = {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
                  "g_loss": g_loss, "d_x": tf.reduce_mean(d_x), "d_g_z": tf.reduce_mean(d_g_z)}
        if self.lecam_anchors is not None:
            values["real_logit"] = tf.reduce_mean(tf.cast(real_logits, tf.float32))
            values["fake_logit"] = tf.reduce_mean(tf.cast(fake_logits, tf.float32))
        return values, global_z, d_x, d_g_z

    def _draw_z(self, batch_size, replica_count):
        """(the global batch's z, this replica's rows of it). Every replica draws the global batch from
        the same random state (kept in checkpoints) and takes its own rows, so several replicas see the
        z one device would."""
        global_z = z_tensor(batch_size * replica_count, self.z_dim, self.z_dist, seed=self.z_seed)
        return global_z, replicas.replica_slice(global_z, batch_size)

    def _discriminate_real(self, images):
        """(D's logits of the real images, their R1 penalty or None when r1_gamma is 0). Called inside
        D's tape, so the penalty's own gradient reaches D's weights; the input tape exists only when
        the penalty is asked for, and the gradient of an adaptive penalty of weight 0 is not computed."""
        if self.r1_gamma <= 0:
            return self.discriminator(images, training=True), None
        with tf.GradientTape(watch_accessed_variables=False) as input_tape:
            input_tape.watch(images)
            logits = self.discriminator(images, training=True)
            logit_sum = tf.reduce_sum(tf.cast(logits, tf.float32))

        def penalty():
            return losses.r1_penalty(input_tape.gradient(logit_sum, images))

        if self.r1_weight is None or not tf.inside_function() or replicas.num_replicas() > 1:
            # Several replicas always compute it: synchronized batch norm's collectives cannot sit
            # inside a tf.cond under a strategy.
            return logits, penalty()
        return logits, tf.cond(self.r1_weight > 0, penalty, lambda: tf.constant(0.0))

    def _for_g(self, fake_logits):
        """The logits G's loss is taken over: all of them, or under top-k training the best rated (of
        this replica's rows, under a strategy with several)."""
        if self.g_topk >= 1:
            return fake_logits
        count = losses.topk_count(tf.shape(fake_logits)[0], self.epoch, self.g_topk)
        return losses.best_rated(fake_logits, count)

    def _consistency(self, real_images, real_logits, fake_images, fake_logits):
        """bCR's weighted penalty: the same images under a second draw of the augmentation should get
        the same logits. Faded out by cr_until; once its weight is 0, D's extra passes are skipped."""

        def penalty():
            real_again = self.discriminator(self._augment(real_images), training=True)
            consistency = losses.consistency_penalty(real_logits, real_again)
            if self.cr_fakes:
                fake_again = self.discriminator(self._augment(fake_images), training=True)
                consistency += losses.consistency_penalty(fake_logits, fake_again)
            return weight * consistency

        weight = losses.faded_weight(self.cr_weight, self.step, self.cr_until)
        if not self.cr_until or not tf.inside_function() or replicas.num_replicas() > 1:
            return penalty()  # Several replicas: as R1's penalty, no collectives inside a tf.cond.
        return tf.cond(weight > 0, penalty, lambda: tf.constant(0.0))

    def _r1_gamma_now(self):
        """R1's weight in this step: gamma, times the adaptive weight when there is one."""
        return self.r1_gamma if self.r1_weight is None else self.r1_gamma * self.r1_weight

    def _labels(self, batch_size, replica_count):
        """D's (real, fake) labels of this replica's rows, drawn for the global batch as z is."""
        labels = losses.discriminator_labels(
            tf.stack([batch_size * replica_count, 1]), self.real_label_range, self.fake_label_range,
            self.label_flip_prob, seed=self.z_seed)
        return tuple(replicas.replica_slice(part, batch_size) for part in labels)

    def _augment(self, images):
        """T(images) with fresh draws; the images themselves (no op at all) when the policy is empty."""
        if not self.augment:
            return images
        return aug.diff_augment(images, self.augment, self.augment_seed, probability=self.augment_p)

    def _check_finite(self, tensors):
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(t))) for t in tensors])
        first_bad = tf.logical_and(tf.logical_not(finite), tf.equal(self.nonfinite_step, 0))
        self.nonfinite_step.assign(tf.where(first_bad, tf.convert_to_tensor(self.step), self.nonfinite_step))


class StepValues:
    """The values of the latest steps, kept inside the compiled step for the summaries callback
    (dcgan_tf/training/summaries.py), which reads them between executions of `fit`.

    `rows[(step - 1) % capacity]` holds step `step`'s values of `names` (METRIC_NAMES, then the
    model's optional ones such as r1_weight; the step's own, not the epoch's means that `fit`'s logs
    carry), `steps` the step each row belongs to: the last `capacity`
    steps (at least ROWS, and every step of an execution), so the callback can write them in
    batches. `z`, `d_x`, `d_g_z` are the global batch's z, D(x) and D(G(z)) of the latest step.
    Not part of checkpoints."""

    ROWS = 32

    def __init__(self, capacity: int, z_dim: int, names=METRIC_NAMES):
        self.capacity = max(1, int(capacity))
        self.names = tuple(names)

        def variable(initial, shape, name):
            # Every replica keeps the same (global) values; the first replica's assignment counts.
            return tf.Variable(initial, shape=shape, trainable=False, name=name,
                               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

        self.rows = variable(tf.zeros((self.capacity, len(self.names))), None, "step_values")
        self.steps = variable(tf.zeros((self.capacity,), tf.int64), None, "step_values_steps")
        self.z = variable(tf.zeros((0, z_dim)), tf.TensorShape([None, z_dim]), "step_z")
        self.d_x = variable(tf.zeros((0, 1)), tf.TensorShape([None, 1]), "step_d_x")
        self.d_g_z = variable(tf.zeros((0, 1)), tf.TensorShape([None, 1]), "step_d_g_z")

    def keep(self, step, values: dict, *, z, d_x, d_g_z) -> None:
        step = tf.convert_to_tensor(step)
        index = [[(step - 1) % self.capacity]]
        row = tf.stack([tf.cast(values[name], tf.float32) for name in self.names])
        self.rows.assign(tf.tensor_scatter_nd_update(self.rows, index, row[None]))
        self.steps.assign(tf.tensor_scatter_nd_update(self.steps, index, step[None]))
        self.z.assign(tf.cast(z, tf.float32))
        self.d_x.assign(d_x)
        self.d_g_z.assign(d_g_z)


def _per_replica_share(loss, replica_count: int):
    """A replica's part of the global loss: its mean over the local batch / replica_count. The optimizer
    sums the replicas' gradients, so the update is the one of the global batch's mean loss."""
    return loss if replica_count == 1 else loss / replica_count
