"""The train step's replica helpers outside a strategy (one replica: each is the identity) and the
stop agreement of a multiworker cluster (its two-worker run: tests/test_distribute.py); under
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


def test_a_stop_is_agreed_at_once_by_one_process_and_in_the_next_step_across_workers():
    alone = replicas.StopAgreement()
    alone.request()
    assert alone.agreed and not alone.requested_elsewhere
    alone.reset()
    assert not alone.agreed

    cluster = replicas.StopAgreement(across_workers=True)
    step = tf.function(cluster.agree)  # What the train step runs on every worker.
    step()
    assert not cluster.agreed
    cluster.request()
    assert not cluster.agreed  # Asked for here; the workers have not agreed yet.
    cluster.reset()  # A new fit: the request, not yet agreed, stays pending.
    step()
    assert cluster.agreed and not cluster.requested_elsewhere
    cluster.reset()  # A new fit after the stop: forgotten.
    assert not cluster.agreed
    step()
    assert not cluster.agreed


def test_a_stop_asked_for_while_the_step_is_traced_is_requested_eagerly():
    # A signal handler can run in the middle of tracing: its request must not become a graph op.
    cluster = replicas.StopAgreement(across_workers=True)

    @tf.function
    def traced_step():
        before = cluster.agreed  # Read as a Python value, as Keras's attribute setter does.
        cluster.request()
        cluster.agree()
        return tf.constant(before)

    assert not bool(traced_step())
    assert cluster.agreed


def test_a_stop_without_saving_holds_off_every_save_until_the_next_fit():
    alone = replicas.StopAgreement()
    assert alone.saves
    alone.request(save=False)  # A failed write.
    alone.request()  # The plain stop the model's stop_training then asks for keeps it.
    assert alone.agreed and not alone.saves
    alone.reset()
    assert alone.saves

    cluster = replicas.StopAgreement(across_workers=True)
    step = tf.function(cluster.agree)
    cluster.request(save=False)
    cluster.request()
    assert not cluster.saves  # At once on the worker that cannot write.
    step()
    assert cluster.agreed and not cluster.saves
    cluster.reset()
    assert cluster.saves

    # Another worker's view: its own request (if any) was plain, the step's sum carries the mark.
    other = replicas.StopAgreement(across_workers=True)
    other.request()
    other._agreed_sum.assign(1.0 + replicas.StopAgreement.WITHOUT_SAVING)  # What the all-reduce gives there.
    assert other.agreed and not other.saves
