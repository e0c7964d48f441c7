"""Weights and checkpoints in PaddleSeg's layout, written atomically.

save_dir/iter_N/{model.pdparams, model.pdopt, train_state.pdstates} and
save_dir/best_model/model.pdparams. Every folder is written under a temporary name and
renamed, so a crash mid-save leaves the previous checkpoint intact. Every file is read
back through paddleseg_ext.weights, which runs no code from it.
"""

import glob
import os
import re
import shutil

import paddle
from paddleseg.utils import logger

from paddleseg_ext import weights
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.pretrained import local_path

_ITER_DIR = re.compile(r'^iter_(\d+)$')
CHECKPOINT_FILES = ('model.pdparams', 'model.pdopt', 'train_state.pdstates')


def load_weights(model, path, what='model'):
    """Loads a .pdparams (a path, a folder holding one, or a URL) into `model`, strictly:
    missing file, keys or shapes are errors. Returns the local path read."""
    if path is None:
        raise UserInputError(f'no weights given for the {what}: pass a .pdparams path')
    path = local_path(path)
    if os.path.isdir(path):
        path = os.path.join(path, 'model.pdparams')
    if not os.path.isfile(path):
        raise UserInputError(
            f"{what} weights '{path}' do not exist: check the path "
            f'(e.g. output/<run>/best_model/model.pdparams)'
        )
    set_weights(model, weights.load(path), path, what)
    return path


def set_weights(model, state, path, what='model'):
    """Sets a loaded state dict (read from `path`) into `model`; keys and shapes must fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserInputError(
            f"{what} weights '{path}' do not fit the {what} config: "
            f'{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected '
            f'(e.g. {unexpected[:2]}): use the config the weights were trained with'
        )
    for key, value in expected.items():
        if list(state[key].shape) != list(value.shape):
            raise UserInputError(
                f"{what} weights '{path}': {key} has shape {list(state[key].shape)}, the "
                f"config's model expects {list(value.shape)}: use the config the weights "
                f'were trained with'
            )
    model.set_state_dict(state)
    return path


def _replace_dir(tmp_dir, final_dir):
    """Renames tmp_dir to final_dir; an existing final_dir is removed only afterwards."""
    old_dir = final_dir + '.old'
    if os.path.exists(old_dir):
        shutil.rmtree(old_dir)
    if os.path.exists(final_dir):
        os.rename(final_dir, old_dir)
    os.rename(tmp_dir, final_dir)
    if os.path.exists(old_dir):
        shutil.rmtree(old_dir)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomic(final_dir, files):
    """Writes {file name: object} with paddle.save into final_dir, atomically.

    A failed write (e.g. no space left) removes the partial folder and stops with one
    line; the previous final_dir is untouched."""
    tmp_dir = final_dir + '.tmp'
    if os.path.exists(tmp_dir):
        shutil.rmtree(tmp_dir)
    try:
        os.makedirs(tmp_dir)
        for name, obj in files.items():
            paddle.save(obj, os.path.join(tmp_dir, name))
            _fsync(os.path.join(tmp_dir, name))  # on disk before the rename publishes it
    except OSError as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        previous = checkpoint_dirs(os.path.dirname(final_dir))
        kept = f'; {previous[-1]} is intact' if previous else ''
        raise UserInputError(
            f'saving {final_dir} failed ({exc.strerror or exc}): free space or fix '
            f'permissions on {os.path.dirname(final_dir) or "."}{kept} (resume with '
            f'--resume_model auto)'
        ) from None
    _replace_dir(tmp_dir, final_dir)
    _fsync(os.path.dirname(os.path.abspath(final_dir)))


def checkpoint_dirs(save_dir):
    """Complete iter_N checkpoints in save_dir, oldest first."""
    found = []
    for path in glob.glob(os.path.join(save_dir, 'iter_*')):
        match = _ITER_DIR.match(os.path.basename(path))
        if match and os.path.isfile(os.path.join(path, 'train_state.pdstates')):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def read_checkpoint(folder):
    """{file name: loaded object} of an iter_N checkpoint folder."""
    return {name: weights.load(os.path.join(folder, name)) for name in CHECKPOINT_FILES}


def resume_checkpoint(resume_model, save_dir):
    """(folder, read_checkpoint(folder)) to resume from, or (None, None) for a fresh run.

    'auto' → the newest checkpoint in save_dir whose files all read; one with a truncated
    or damaged file is skipped with a warning naming it. A file refused as unsafe stops
    the run. A path → that checkpoint, which must read."""
    if resume_model is None:
        return None, None
    if resume_model == 'auto':
        for folder in reversed(checkpoint_dirs(save_dir)):
            try:
                return folder, read_checkpoint(folder)
            except weights.DamagedWeights as exc:
                logger.warning(f'--resume_model auto: skipping checkpoint {folder}: {exc}')
        return None, None
    if not os.path.isfile(os.path.join(resume_model, 'train_state.pdstates')):
        raise UserInputError(
            f"--resume_model '{resume_model}' is not a complete checkpoint "
            f'(needs {", ".join(CHECKPOINT_FILES)}): pass a save_dir/iter_N '
            f"folder or 'auto'"
        )
    return resume_model, read_checkpoint(resume_model)


def prune_checkpoints(save_dir, keep_max):
    for path in checkpoint_dirs(save_dir)[:-keep_max] if keep_max > 0 else []:
        shutil.rmtree(path)
