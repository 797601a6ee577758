"""The train step's replica helpers outside a strategy (one replica: each is the identity); under
MirroredStrategy over two devices, tests/test_distribute.py's test that the update equals one device's."""

import numpy as np
import tensorflow as tf

from dcgan_tf.model import replicas


def test_one_replica_keeps_every_row_and_value():
    rows = tf.reshape(tf.range(12.0), [6, 2])
    assert replicas.num_replicas() == 1
    np.testing.assert_array_equal(replicas.replica_slice(rows, 3), rows)
    np.testing.assert_array_equal(replicas.all_gather(rows), rows)
    values = {"d_loss": tf.constant(1.5), "g_loss": tf.constant(0.5)}
    assert replicas.all_mean(values) is values
    assert replicas.step_logs(values) is values

