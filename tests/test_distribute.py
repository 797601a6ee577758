"""--strategy mirrored / multiworker: equal to one device, identical workers, chief-only files, a lost
worker as one error line. Logical CPU devices and TF_CONFIG must be set before TensorFlow starts, so
the training runs in subprocesses, all started at once by one module fixture."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import MAIN, REPO, TINY_FLAGS, assert_one_line_error, write_images

# Trains the tiny config under the strategies in argv[3] ("default,mirrored" ...) and dumps, per strategy,
# the weights, counters, losses, the generator's images of the sample z and D's logits of the real images.
# With "check", also the gradients of one D and one G loss on the same global batch (one device vs the
# replicas' sum) and the refusal of a batch that does not split over the replicas.
_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
root, out, strategies = sys.argv[2], sys.argv[3], sys.argv[4].split(",")
from dcgan_tf import distribute
distribute.configure_cpu_devices(int(sys.argv[5]))
import numpy as np, keras, tensorflow as tf
from dcgan_tf import gan, losses, nets, train
from dcgan_tf.config import RunConfig
from dcgan_tf.errors import UserError

def config(strategy, **extra):
    values = dict(data_dir=os.path.join(root, "data"), dataset="faces", output_height=32, gf_dim=4, df_dim=4,
                  batch_size=4, z_dim=8, epoch=1, seed=1, sample_freq=2, ckpt_freq=2, strategy=strategy,
                  worker_timeout=30)
    values.update({k: os.path.join(root, f"{k}_{strategy}") for k in ("checkpoint_dir", "sample_dir", "log_dir")})
    values.update(extra)
    return RunConfig.create(**values)

dump = {}
for name in strategies:
    result = train.train(config(name), verbose=0)
    model = result.run.model
    images = np.stack([np.asarray(x) for x in train.data.load_image_folder(
        os.path.join(root, "data", "faces"), pattern="*", crop=False, crop_size=(64, 64), output_size=(32, 32),
        c_dim=3).images]).astype("float32") / 127.5 - 1
    for i, v in enumerate(model.generator.weights + model.discriminator.weights):
        dump[f"{name}/w{i}"] = v.numpy()
    dump[f"{name}/counters"] = np.array([int(model.step.numpy()), int(model.epoch.numpy())])
    dump[f"{name}/seed_state"] = np.asarray(model.z_seed.state.numpy())
    dump[f"{name}/losses"] = np.array([result.history[k][-1] for k in sorted(result.history)])
    dump[f"{name}/g_images"] = model.generator(result.run.sample_z, training=False).numpy()
    dump[f"{name}/d_logits"] = model.discriminator(images, training=False).numpy()

if "check" in sys.argv[6:]:
    cfg = config("default", c_dim=3)
    rng = np.random.default_rng(0)
    batch = tf.constant(rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32"))
    z = tf.constant(rng.uniform(-1, 1, (4, 8)).astype("float32"))
    for name in ("default", "mirrored"):
        strategy = distribute.make_strategy(name)
        replicas = strategy.num_replicas_in_sync
        keras.utils.set_random_seed(1)
        with strategy.scope():
            g, d = nets.build_networks(cfg, synchronized_bn=replicas > 1)

        def step(images, zz):
            with tf.GradientTape(persistent=True) as tape:
                real, fake = d(images, training=True), d(g(zz, training=True), training=True)
                d_loss = gan._per_replica_share(sum(losses.discriminator_losses(real, fake)), replicas)
                g_loss = gan._per_replica_share(losses.generator_loss(fake), replicas)
            grads = tape.gradient(d_loss, d.trainable_variables) + tape.gradient(g_loss, g.trainable_variables)
            # What the Keras optimizer does with the replicas' gradients: sum them.
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)

        part = lambda t: strategy.experimental_distribute_values_from_function(
            lambda ctx: t[ctx.replica_id_in_sync_group * 4 // replicas:(ctx.replica_id_in_sync_group + 1) * 4 // replicas])
        # strategy.run inside one tf.function, as fit does: the replicas' collectives then run in one order.
        grads = tf.function(lambda a, b: strategy.run(step, args=(a, b)))(part(batch), part(z))
        for i, gr in enumerate(grads):
            dump[f"grad_{name}/{i}"] = strategy.experimental_local_results(gr)[0].numpy()
    try:
        train.train(config("mirrored", batch_size=3, checkpoint_dir=os.path.join(root, "odd")), verbose=0)
        dump["odd_batch_error"] = np.array("no error")
    except UserError as e:
        dump["odd_batch_error"] = np.array(str(e))
np.savez(out, **dump)
"""

LR = 1e-4  # The simpsons preset's, which the tiny configs use.


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _start(args, folder, name, env=None):
    """Popen with stdout and stderr in files (a pipe nobody reads could fill and stall training)."""
    proc = subprocess.Popen(args, cwd=folder, env=env or _env(), stdout=open(folder / f"{name}.out", "w"),
                            stderr=open(folder / f"{name}.err", "w"))
    proc.out_path, proc.err_path = folder / f"{name}.out", folder / f"{name}.err"
    return proc


def _start_script(folder, out, strategies, cpu_devices, *extra, env=None):
    return _start([sys.executable, "-c", _SCRIPT, REPO, str(folder), str(out), strategies, str(cpu_devices),
                   *extra], folder, os.path.basename(str(out)), env=env)


def _err(proc):
    return proc.err_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Starts every training of this module at once: mirrored vs one device, two workers, and two
    workers of which one is killed; each test waits for its own."""
    root = tmp_path_factory.mktemp("distribute")
    started = {}
    for name in ("mirrored", "multi", "dying"):
        write_images(root / name / "data" / "faces", 8)
    started["mirrored"] = [_start_script(root / "mirrored", root / "mirrored" / "out.npz", "default,mirrored", 2,
                                         "check")]
    ports = _free_ports(2)
    started["multi"] = [_start_script(root / "multi", root / "multi" / f"out{i}.npz", "multiworker", 0,
                                      env=_env(TF_CONFIG=_tf_config(ports, i))) for i in range(2)]
    ports = _free_ports(2)
    dying = root / "dying"
    started["dying"] = [_start(
        [sys.executable, MAIN, "--train", "--dataset", "faces", *TINY_FLAGS, "--epoch", "10000", "--seed", "1",
         "--strategy", "multiworker", "--worker_timeout", "60", "--ckpt_freq", "2", "--sample_freq", "1000",
         "--checkpoint_dir", f"ckpt{i}", "--sample_dir", f"samples{i}", "--log_dir", f"logs{i}"],
        dying, f"worker{i}", env=_env(TF_CONFIG=_tf_config(ports, i))) for i in range(2)]
    yield root, started
    for procs in started.values():
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _finish(proc, timeout=400):
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, _err(proc)[-3000:]


def test_mirrored_over_two_devices_equals_one_device(jobs):
    root, started = jobs
    _finish(started["mirrored"][0])
    dump = np.load(root / "mirrored" / "out.npz")
    # The gradients of the same global batch: one device vs the sum of the replicas' (loss / replicas,
    # synchronized batch norm). Tight, relative to each gradient's size.
    grads = sorted(k.split("/")[1] for k in dump.files if k.startswith("grad_default/"))
    assert grads
    for i in grads:
        one, two = dump[f"grad_default/{i}"], dump[f"grad_mirrored/{i}"]
        scale = np.abs(one).max() + 1e-12
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-4 * scale, err_msg=f"gradient {i}")
    # Two fit steps: same counters, random state, losses and model outputs.
    for key in ("counters", "seed_state"):
        np.testing.assert_array_equal(dump[f"mirrored/{key}"], dump[f"default/{key}"])
    np.testing.assert_array_equal(dump["mirrored/counters"], [2, 1])
    np.testing.assert_allclose(dump["mirrored/losses"], dump["default/losses"], rtol=1e-4)
    for key in ("g_images", "d_logits"):
        np.testing.assert_allclose(dump[f"mirrored/{key}"], dump[f"default/{key}"], atol=2e-3)
    # Weights: Adam moves each by about +-LR per update whatever the gradient's size, so where a true
    # gradient is zero (biases feeding a batch norm) rounding noise decides the sign. 2 steps hold 2 D
    # and 4 G updates: no weight may differ by more than those updates could move it.
    weights = sorted(k for k in dump.files if k.startswith("default/w"))
    for key in weights:
        np.testing.assert_allclose(dump["mirrored/" + key.split("/")[1]], dump[key], rtol=0, atol=8 * LR)
    assert "does not split evenly over the 2 replicas" in str(dump["odd_batch_error"])


def test_two_workers_end_identical_and_only_the_chief_writes(jobs):
    root, started = jobs
    for proc in started["multi"]:
        _finish(proc)
    folder = root / "multi"
    chief, other = np.load(folder / "out0.npz"), np.load(folder / "out1.npz")
    assert chief.files == other.files
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    np.testing.assert_array_equal(chief["multiworker/counters"], [2, 1])
    run = "faces_4_32_32"
    ckpt = folder / "checkpoint_dir_multiworker" / run
    assert sorted(os.listdir(ckpt)) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                                         "config.json", "metrics.csv"]
    assert os.listdir(folder / "sample_dir_multiworker" / run) == ["train_00_0002.png"]
    assert len(os.listdir(folder / "log_dir_multiworker" / run)) == 1  # One event file: the chief's.


def test_a_dead_worker_stops_the_other_with_one_line(jobs):
    root, started = jobs
    chief, worker = started["dying"]
    first_checkpoint = root / "dying" / "ckpt0" / "faces_4_32_32" / "ckpt-2.index"
    deadline = time.time() + 400
    while not first_checkpoint.exists():
        assert chief.poll() is None and worker.poll() is None, (_err(chief) + _err(worker))[-3000:]
        assert time.time() < deadline, "the two workers never reached step 2"
        time.sleep(0.5)
    worker.send_signal(signal.SIGKILL)
    killed = time.time()
    chief.wait(timeout=90)
    assert time.time() - killed < 90
    line = assert_one_line_error(subprocess.CompletedProcess([], chief.returncode, "", _err(chief)),
                                 "a worker of the cluster stopped", "restart the same command on every worker")
    assert "ckpt-" in line  # Names the newest checkpoint to resume from.
    assert not (root / "dying" / "ckpt1").exists()


def test_multiworker_without_tf_config_is_one_line(tmp_path, monkeypatch, capsys):
    from dcgan_tf import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    write_images(tmp_path / "data" / "faces", 4)
    monkeypatch.chdir(tmp_path)
    code = cli.execute(["main.py", "--train", "--dataset", "faces", *TINY_FLAGS, "--strategy", "multiworker"])
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess([], code, "", err), "TF_CONFIG", "--strategy multiworker")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs a \"cluster\" and a \"task\""),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "is not in the cluster"),
])
def test_malformed_tf_config_is_refused(text, fragment):
    from dcgan_tf import distribute
    from dcgan_tf.errors import UserError

    with pytest.raises(UserError, match=fragment) as caught:
        distribute.parse_tf_config(text)
    assert "\n" not in str(caught.value)


def test_chief_is_worker_zero_unless_a_chief_is_named():
    from dcgan_tf import distribute

    two = {"worker": ["a:1", "b:1"]}
    assert distribute.is_chief_task({"cluster": two, "task": {"type": "worker", "index": 0}})
    assert not distribute.is_chief_task({"cluster": two, "task": {"type": "worker", "index": 1}})
    named = {"chief": ["c:1"], **two}
    assert distribute.is_chief_task({"cluster": named, "task": {"type": "chief", "index": 0}})
    assert not distribute.is_chief_task({"cluster": named, "task": {"type": "worker", "index": 0}})


def test_global_batch_must_split_over_the_replicas():
    from dcgan_tf import distribute
    from dcgan_tf.errors import UserError

    distribute.check_global_batch(8, 4)
    with pytest.raises(UserError, match="--batch_size 6 or 8"):
        distribute.check_global_batch(6 + 1, 2)
