"""Weights and checkpoints in PaddleSeg's layout, written atomically.

save_dir/iter_N/{model.pdparams, model.pdopt, train_state.pdstates} and
save_dir/best_model/model.pdparams. Every folder is written under a temporary name and
renamed, so a crash mid-save leaves the previous checkpoint intact.
"""
import glob
import os
import re
import shutil

import paddle

from paddleseg_ext.errors import UserInputError

_ITER_DIR = re.compile(r'^iter_(\d+)$')


def load_weights(model, path, what='model'):
    """Loads a .pdparams into `model`, strictly: missing file, keys or shapes are errors."""
    if path is None:
        raise UserInputError(f"no weights given for the {what}: pass a .pdparams path")
    if os.path.isdir(path):
        path = os.path.join(path, 'model.pdparams')
    if not os.path.isfile(path):
        raise UserInputError(f"{what} weights '{path}' do not exist: check the path "
                             f"(e.g. output/<run>/best_model/model.pdparams)")
    try:
        state = paddle.load(path)
    except Exception as exc:
        raise UserInputError(f"{what} weights '{path}' cannot be read ({exc}): is it a "
                             f".pdparams file?") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserInputError(
            f"{what} weights '{path}' do not fit the {what} config: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}): use the config the weights were trained with")
    for key, value in expected.items():
        if list(state[key].shape) != list(value.shape):
            raise UserInputError(
                f"{what} weights '{path}': {key} has shape {list(state[key].shape)}, the "
                f"config's model expects {list(value.shape)}: use the config the weights "
                f"were trained with")
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


def save_atomic(final_dir, files):
    """Writes {file name: object} with paddle.save into final_dir, atomically."""
    tmp_dir = final_dir + '.tmp'
    if os.path.exists(tmp_dir):
        shutil.rmtree(tmp_dir)
    os.makedirs(tmp_dir)
    for name, obj in files.items():
        paddle.save(obj, os.path.join(tmp_dir, name))
    _replace_dir(tmp_dir, final_dir)


def checkpoint_dirs(save_dir):
    """Complete iter_N checkpoints in save_dir, oldest first."""
    found = []
    for path in glob.glob(os.path.join(save_dir, 'iter_*')):
        match = _ITER_DIR.match(os.path.basename(path))
        if match and os.path.isfile(os.path.join(path, 'train_state.pdstates')):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def resolve_resume(resume_model, save_dir):
    """'auto' → newest complete checkpoint in save_dir (or None); a path → that checkpoint."""
    if resume_model is None:
        return None
    if resume_model == 'auto':
        found = checkpoint_dirs(save_dir)
        return found[-1] if found else None
    if not os.path.isfile(os.path.join(resume_model, 'train_state.pdstates')):
        raise UserInputError(f"--resume_model '{resume_model}' is not a complete checkpoint "
                             f"(needs model.pdparams, model.pdopt, train_state.pdstates): "
                             f"pass a save_dir/iter_N folder or 'auto'")
    return resume_model


def prune_checkpoints(save_dir, keep_max):
    for path in checkpoint_dirs(save_dir)[:-keep_max] if keep_max > 0 else []:
        shutil.rmtree(path)
