"""Training on several devices or hosts through tf.distribute (--strategy).

- `default`: TensorFlow's default strategy, one device (what runs without --strategy).
- `mirrored`: tf.distribute.MirroredStrategy over this machine's GPUs, or its CPU devices when it has
  none (`--cpu_devices N` splits the CPU into N logical devices, to try it without GPUs).
- `multiworker`: tf.distribute.MultiWorkerMirroredStrategy across hosts named by TF_CONFIG.

--batch_size is the global batch: each of the R replicas gets batch_size / R images per step, and
the update equals the one-device update on the same global batch. Only the chief (TF_CONFIG's chief task,
else worker 0, or the one process) writes files; every worker runs the same collectives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf

from dcgan_tf import runs
from dcgan_tf.config import STRATEGIES
from dcgan_tf.errors import UserError

TF_CONFIG = "TF_CONFIG"

_TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\'')


def parse_tf_config(text) -> dict:
    """The TF_CONFIG of a multiworker run, checked: {"cluster": {"worker": [...], ...}, "task": {...}}.

    UserError (one line, with an example) when it is missing or malformed."""
    if not text or not text.strip():
        raise UserError(f"--strategy multiworker needs the {TF_CONFIG} environment variable naming the "
                        f"workers and this one's index, e.g. {_TF_CONFIG_EXAMPLE}.")
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise UserError(f"{TF_CONFIG} is not valid JSON ({e}); set it like {_TF_CONFIG_EXAMPLE}.") from None
    cluster = parsed.get("cluster") if isinstance(parsed, dict) else None
    task = parsed.get("task") if isinstance(parsed, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError(f"{TF_CONFIG} needs a \"cluster\" and a \"task\" object; set it like {_TF_CONFIG_EXAMPLE}.")
    for kind, addresses in cluster.items():
        if kind not in ("chief", "worker") or not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and ":" in a for a in addresses):
            raise UserError(f"{TF_CONFIG}: cluster \"{kind}\" must be a list of \"host:port\" addresses under "
                            f"\"chief\" or \"worker\"; set it like {_TF_CONFIG_EXAMPLE}.")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise UserError(f"{TF_CONFIG}: task {json.dumps(task)} is not in the cluster {json.dumps(cluster)}; "
                        f"give \"type\" one of {', '.join(cluster)} and \"index\" from 0 to the number of "
                        f"its addresses - 1.")
    return parsed


def is_chief_task(kind: str, index: int, jobs) -> bool:
    """Whether task `kind` `index` of a cluster with these job names is the chief, the one process that
    writes the run's files: "chief", or worker 0 when the cluster has none."""
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in jobs)


def configure_cpu_devices(count: int) -> None:
    """Splits the first CPU into `count` logical devices (0: leave as is). Must run before TensorFlow
    initialises its devices; UserError when it is too late and the count differs."""
    if count <= 0:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise UserError(f"--cpu_devices {count} came after TensorFlow set up its devices; give it in a "
                            f"fresh process (on the command line).") from None


def make_strategy(name: str, cpu_devices: int = 0, worker_timeout: int = 0) -> tf.distribute.Strategy:
    """The tf.distribute strategy for --strategy `name`."""
    configure_cpu_devices(cpu_devices)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        _configure_heartbeats(parse_tf_config(os.environ.get(TF_CONFIG)))
        # Collectives that wait longer than this for a worker fail instead of hanging for ever. It also
        # bounds how far one worker may lag behind the others, tracing included, so it must be generous.
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout or None)
        with translate_worker_errors():
            return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")


HEARTBEAT_TIMEOUT_S = 30


def _configure_heartbeats(tf_config: dict) -> None:
    """Lets the cluster's coordination service declare a worker dead after HEARTBEAT_TIMEOUT_S seconds
    without a heartbeat, instead of TF's 10 s: on a loaded host a live worker can miss that and the
    whole cluster stops. MultiWorkerMirroredStrategy sets up the same service with defaults unless one
    is configured; without TF's internal modules this keeps the defaults."""
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context
    except ImportError:
        return
    if context.context().coordination_service is not None:
        return
    cluster = tf.train.ClusterSpec(tf_config["cluster"])
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
            for job in ("chief", "worker") if job in cluster.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster),
        coordinated_jobs=jobs, heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: the chief of a multiworker cluster, else always."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    if resolver.task_type is None:
        return True
    return is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def check_global_batch(batch_size: int, replicas: int) -> None:
    """The global batch must split evenly over the replicas."""
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        raise UserError(
            f"--batch_size {batch_size} does not split evenly over the {replicas} replicas (it is the global "
            f"batch; each replica takes batch_size / {replicas}); use a multiple of {replicas}, e.g. "
            f"--batch_size {lower or replicas} or {lower + replicas}.")


def distribute_batches(strategy: tf.distribute.Strategy, make_global_batches):
    """The dataset of global batches made by `make_global_batches()`, split over the replicas: replica r
    takes rows [r * b, (r + 1) * b) of each global batch, b = global / replicas, the same slice its
    z and labels come from. The default strategy gets the plain dataset."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1 and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return make_global_batches()

    def pipeline(context: tf.distribute.InputContext):
        local = replicas // context.num_input_pipelines  # Replicas fed by this pipeline (this worker).
        first = context.input_pipeline_id * local

        def my_rows(batch):
            per_replica = tf.shape(batch)[0] // replicas
            mine = batch[first * per_replica:(first + local) * per_replica]
            return tf.reshape(mine, tf.concat([[local, per_replica], tf.shape(batch)[1:]], 0))

        ds = make_global_batches()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).map(my_rows).unbatch()  # One element per local replica, in order.

    return strategy.distribute_datasets_from_function(pipeline)


def check_same_start(strategy: tf.distribute.Strategy, step: Optional[int], restored: bool = False) -> None:
    """The workers of a multiworker run must start from the same checkpoint: `step` is the step of the
    newest checkpoint this worker found (None: none), or with `restored` the one it restored (it falls
    back to an older one where the newest is damaged, e.g. copied in part to this host). Restoring runs
    collectives that all workers join, so different newest checkpoints stop the cluster with
    TensorFlow's internal error, and different restored ones would train on silently apart.
    UserError on every worker (all see the same steps); nothing on one process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    mine = -1 if step is None else step
    gathered = strategy.run(lambda: tf.distribute.get_replica_context().all_gather(
        tf.constant([mine], tf.int64), axis=0))
    message = different_starts_message(strategy.experimental_local_results(gathered)[0].numpy(), restored)
    if message:
        raise UserError(message)


def different_starts_message(steps, restored: bool = False) -> str:
    """check_same_start's line for the workers' checkpoint steps (-1: none); empty where they agree."""
    steps = sorted({int(s) for s in steps})
    if len(steps) == 1:
        return ""
    found = ", ".join("none" if s < 0 else f"step {s}" for s in steps)
    if restored:
        return (f"the workers restored different checkpoints ({found}): a newer one is damaged on some "
                f"host (its worker warned which); copy the chief's run folder to the other hosts again, "
                f"then restart the same command on every worker.")
    return (f"the workers found different newest checkpoints ({found}): each must read the chief's; put "
            f"--checkpoint_dir on a file system all hosts share, or copy the chief's run folder to the same "
            f"place on the other hosts, then restart the same command on every worker.")


class ScratchCheckpointManager:
    """What a non-chief worker saves checkpoints through: saving runs collectives that every worker
    must join, so it writes into a temporary folder and deletes it at once (the chief keeps the run's)."""

    def __init__(self, checkpoint: tf.train.Checkpoint):
        self.checkpoint = checkpoint
        self.directory = tempfile.gettempdir()
        self.latest_checkpoint = None

    def save(self, checkpoint_number=None):
        self.checkpoint.save_counter.assign_add(1)  # As the chief's CheckpointManager.save does.
        scratch = tempfile.mkdtemp(prefix="dcgan_tf_worker_ckpt_")
        try:
            return self.checkpoint.write(runs.checkpoint_path(scratch, checkpoint_number))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                  tf.errors.AbortedError)


def worker_lost_message(error: Exception, checkpoint: str = "") -> str:
    return (f"a worker of the cluster stopped or cannot be reached ({type(error).__name__}); restart the "
            f"same command on every worker to resume from the newest checkpoint ({checkpoint or 'none yet'}).")


@contextlib.contextmanager
def translate_worker_errors(checkpoint=lambda: ""):
    """Turns the errors of a lost worker (unavailable peer, collective timeout) into one UserError line.
    `checkpoint` returns the newest checkpoint's path for the message."""
    try:
        yield
    except _WORKER_ERRORS as e:
        raise UserError(worker_lost_message(e, checkpoint())) from None
