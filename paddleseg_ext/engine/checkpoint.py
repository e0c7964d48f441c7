"""Weights and checkpoints in PaddleSeg's layout, written atomically.

save_dir/iter_N/{model.pdparams, model.pdopt, train_state.pdstates} and
save_dir/best_model/model.pdparams. Every folder is written under a temporary name and
renamed, so a crash mid-save leaves the previous checkpoint intact. Every file is read
back through paddleseg_ext.weights, which runs no code from it.
"""

import glob
import numbers
import os
import re
import shutil

import paddle
from paddleseg.utils import logger

from paddleseg_ext import weights
from paddleseg_ext.errors import UserInputError

_ITER_DIR = re.compile(r'^iter_(\d+)$')
CHECKPOINT_FILES = ('model.pdparams', 'model.pdopt', 'train_state.pdstates')


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


def _check_train_state(state, path):
    """A .pdstates must hold the progress this trainer writes, of the types it writes."""
    if not isinstance(state, dict):
        raise weights.refused(path, f'it holds a {type(state).__name__}, not a train state')
    for key in ('iter', 'seed', 'best_iter'):
        if type(state.get(key)) is not int or state[key] < (0 if key == 'iter' else -1):
            raise weights.refused(path, f'its {key!r} is {state.get(key)!r:.60}, not a count')
    best = state.get('best_score', state.get('best_miou'))
    if not isinstance(best, numbers.Real):  # numpy's floats too
        raise weights.refused(path, f'its best score is {best!r:.60}, not a number')
    weights.check_state_dict(state.get('auxiliary'), f'{path} (auxiliary)')
    if not isinstance(state.get('scaler', {}), dict):
        raise weights.refused(path, 'its scaler state is not a mapping')


def check_contents(folder, saved):
    """Each file of a checkpoint read by read_checkpoint holds what a checkpoint holds, of
    the types the trainer writes: a wrong type is a refusal, as a planted file."""
    weights.check_state_dict(saved['model.pdparams'], os.path.join(folder, 'model.pdparams'))
    if not isinstance(saved['model.pdopt'], dict):
        raise weights.refused(os.path.join(folder, 'model.pdopt'), 'it is not a mapping')
    _check_train_state(saved['train_state.pdstates'], os.path.join(folder, CHECKPOINT_FILES[2]))


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
