"""Training: building a run and restoring it (train), the callbacks, checkpoints, tf.distribute, the run lock."""
