"""Training: the loop (train), which run a command means and its options (run_options), building a run
and restoring it (build), the callbacks (callbacks, summaries), checkpoints, the optimizers, the
precision, tf.distribute (distribute) and the run lock (runlock). The training step is the model's
(dcgan_tf/model/gan.py)."""
