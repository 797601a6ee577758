"""What a checkpoint holds, and restoring it with errors a user can act on."""

from __future__ import annotations

import os
import re
import shutil
import warnings

import tensorflow as tf

from dcgan_tf.errors import RunWarning, UserError
from dcgan_tf.runs import CHECKPOINT_PREFIX, STATE_FILE, checkpoint_files, keep_aside, write_text


# Parts missing from checkpoints of earlier versions, which restore without them (those parts keep
# their fresh state).
_ADDED_PARTS = ("augment_seed", "ema_generator", "r1_weight", "lecam_anchors", "epoch_step", "dropout_seed",
                "augment_p")


def checkpoint_parts(model, sample_z) -> dict:
    """Both networks, both optimizers, the step and epoch counters (and the steps into the epoch), the
    random states of z, of DiffAugment and of D's dropout, the fixed sample z, the moving average of G,
    the adaptive R1 weight and DiffAugment probability and LeCam's anchors (when the run keeps them):
    everything an exact resume needs, by the names a checkpoint file gives them.

    A model built to draw images only (no discriminator, build.build_for_sampling) has the generator side
    alone: G, its moving average, the step and epoch counters and the sample z."""
    parts = dict(generator=model.generator, step=model.step, epoch=model.epoch, sample_z=sample_z)
    if model.ema_generator is not None:
        parts["ema_generator"] = model.ema_generator
    if model.discriminator is None:
        return parts
    parts.update(discriminator=model.discriminator, d_optimizer=model.d_optimizer, g_optimizer=model.g_optimizer,
                 epoch_step=model.epoch_step, z_seed=model.z_seed.state, augment_seed=model.augment_seed.state)
    if model.r1_weight is not None:
        parts["r1_weight"] = model.r1_weight
    if model.lecam_anchors is not None:
        parts["lecam_anchors"] = model.lecam_anchors
    if model.augment_p is not None:
        parts["augment_p"] = model.augment_p
    # D's own random state where it has one (--d_dropout): Keras keeps a SeedGenerator's state out of
    # the layer's weights, so the checkpoint names it.
    dropout_seed = getattr(model.discriminator, "dropout_seed", None)
    if dropout_seed is not None:
        parts["dropout_seed"] = dropout_seed.state
    return parts


def make_checkpoint(model, sample_z) -> tf.train.Checkpoint:
    """The checkpoint of everything checkpoint_parts names."""
    return tf.train.Checkpoint(**checkpoint_parts(model, sample_z))


def _saved(saved: dict, name: str) -> bool:
    """Whether a checkpoint's variables (`saved`: name -> shape) include the part `name`."""
    return any(key.startswith(name + "/") for key in saved)


def holds_part(path: str, name: str) -> bool:
    """Whether the checkpoint at `path` saved the part `name` (e.g. "ema_generator")."""
    return _saved(dict(tf.train.list_variables(path)), name)


def _parts_in_file(parts: dict, saved: dict) -> dict:
    """`parts` without the added parts a file of an earlier version lacks."""
    return {name: part for name, part in parts.items() if name not in _ADDED_PARTS or _saved(saved, name)}


def make_manager(checkpoint: tf.train.Checkpoint, folder: str, max_to_keep: int):
    """The run's CheckpointManager. If its list file ("checkpoint") is missing or damaged while
    ckpt-N files exist, the list is rebuilt from them (the damaged file is kept aside), so a run is
    never restarted from scratch over its own checkpoints."""
    remove_unfinished_writes(folder)
    manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=max_to_keep, checkpoint_name=CHECKPOINT_PREFIX)
    found = checkpoint_files(folder)
    if manager.checkpoints or not found:
        return manager
    state = os.path.join(folder, STATE_FILE)
    note = "was missing"
    if os.path.exists(state):
        kept = keep_aside(state)  # Kept, not deleted: nothing saved is thrown away.
        note = f"was damaged (kept as {kept})"
    write_state_file(state, found)
    warnings.warn(RunWarning(f"the checkpoint list {state} {note}; rebuilt the list from the "
                             f"{len(found)} ckpt-N files found."), stacklevel=2)
    return tf.train.CheckpointManager(checkpoint, folder, max_to_keep=max_to_keep, checkpoint_name=CHECKPOINT_PREFIX)


def newest(folder: str):
    """The path of the newest checkpoint in `folder` (from its list, else from its files), or None."""
    found = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    if found is None:
        files = checkpoint_files(folder)
        found = files[-1] if files else None
    return found


_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"  # The epoch counter's name in a checkpoint file.


def saved_epoch(folder: str):
    """The epoch count of the newest checkpoint in `folder`, read from its file alone (nothing is
    built), or None when there is none or it does not read (restoring then says why)."""
    try:
        path = newest(folder)
        return None if path is None else int(tf.train.load_checkpoint(path).get_tensor(_EPOCH_KEY))
    except Exception:  # A damaged list or file: the full restore reports it, or falls back to an older one.
        return None


def write_state_file(state: str, prefixes) -> None:
    """Writes the list file ("checkpoint") of the checkpoints `prefixes` (paths without .index) as
    TensorFlow does (text proto: names relative to its folder, and the save times the manager
    needs), atomically."""
    names = [os.path.basename(p) for p in prefixes]
    times = [os.path.getmtime(p + ".index") for p in prefixes]
    lines = ([f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
             + [f"all_model_checkpoint_timestamps: {t}" for t in times] + [f"last_preserved_timestamp: {min(times) - 1}"])
    write_text(state, "\n".join(lines) + "\n")


def restore_newest(model, sample_z, paths_newest_first) -> str:
    """Restores the newest of `paths` that loads into `model` and `sample_z` (checkpoint_parts),
    warning about damaged newer ones; returns its path.

    UserError when none loads (the first error says why) or the sample grid size differs."""
    parts, errors = checkpoint_parts(model, sample_z), []
    for path in paths_newest_first:
        try:
            saved = dict(tf.train.list_variables(path))
        except (tf.errors.OpError, ValueError) as e:
            errors.append((path, _first_line(e)))
            continue
        if tuple(saved.get("sample_z/.ATTRIBUTES/VARIABLE_VALUE", sample_z.shape)) != tuple(sample_z.shape):
            raise UserError(
                f"{path} holds a different number of sample images; use the run's --sample_num (see its "
                f"config.json), or --run NEW_NAME for a new run.")
        try:
            # A model without D reads its part of a file that holds more (partial).
            restore(tf.train.Checkpoint(**_parts_in_file(parts, saved)), path, partial=model.discriminator is None)
        except UserError as e:
            errors.append((path, str(e)))
            continue
        if errors:
            warnings.warn(RunWarning("; ".join(f"checkpoint {p} is damaged and was skipped ({why})"
                                               for p, why in errors) + f"; loaded the older {path}."),
                          stacklevel=2)
        return path
    path, why = errors[0]
    raise UserError(why if why.startswith("checkpoint ") else f"checkpoint {path} cannot be read ({why}).")


def restore_networks(model, path: str) -> None:
    """G, D and G's moving average from the checkpoint at `path` (another run's, --init_from), nothing
    else: optimizers, counters, random states and sample z stay fresh. Without an average in the file
    (or in the model) the model's average starts from the restored G."""
    if not os.path.exists(path + ".index"):
        raise UserError(f"the checkpoint {path} that --init_from starts from is gone (its run may be training "
                        f"and have replaced it by a newer one); run the command again.")
    parts = {"generator": model.generator, "discriminator": model.discriminator}
    try:
        with_average = model.ema_generator is not None and holds_part(path, "ema_generator")
    except (tf.errors.OpError, ValueError):
        with_average = False  # An unreadable file: restore() below says so.
    if with_average:
        parts["ema_generator"] = model.ema_generator
    restore(tf.train.Checkpoint(**parts), path, partial=True)
    if model.ema_generator is not None and not with_average:
        model.reset_ema()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def remove_unfinished_writes(folder: str) -> None:
    """Deletes the temporary folders a killed checkpoint write leaves (`ckpt-N_temp`). TensorFlow
    publishes a checkpoint only once it is complete, so these are never referenced."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if re.fullmatch(CHECKPOINT_PREFIX + r"-\d+_temp", name) and os.path.isdir(os.path.join(folder, name)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def restore(checkpoint: tf.train.Checkpoint, path: str, *, partial: bool = False) -> None:
    """Restores `path` into already-built objects; UserError if it does not fit them.

    `partial` allows a checkpoint holding more than `checkpoint` asks for (e.g. the generator alone).
    """
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except Exception as e:  # A file we did not write can fail to load in many ways; all mean "not this".
        raise UserError(
            f"checkpoint {path} cannot be loaded into this model ({_first_line(e)}); it may be damaged "
            f"or made with other options: check the run's config.json, or start a new run with --run NEW_NAME."
        ) from None
