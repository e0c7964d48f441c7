"""What a recipe search (tools/tune.py) runs on: a held-out split carved from the
training list, so val is never read, and a record of the search's inputs, so the same
--out only ever continues the same search."""

import hashlib
import json
import os
import random

from paddleseg_ext.config import load_config
from paddleseg_ext.config_yaml import load_config_dict
from paddleseg_ext.datasets.layout import list_file
from paddleseg_ext.weights import sha256

HOLDOUT_FRACTION = 0.2
# Dataset types whose training list the split replaces.
SPLITTABLE = ('Dataset', 'OpticDiscSeg', 'ClassificationDataset')


class TuneError(ValueError):
    """Input the tuner cannot work with; the message is one line."""


def carve_split(student_config, out_dir, fraction=HOLDOUT_FRACTION, seed=0, fold=0):
    """Writes out_dir/{tune_train,tune_holdout}.txt from the student config's training list
    (lines unchanged, so they stay relative to the same dataset_root); returns the
    train_dataset overrides that point a config at them.

    The list is shuffled once by `seed` and cut into disjoint held-out folds of `fraction`
    of it; `fold` picks one (counted round, so any number is a fold): the same seed and
    fold give the same split, and other folds hold out other images."""

    config = load_config(student_config)
    train_cfg = config.train_dataset_cfg
    kind = train_cfg.get('type')
    if kind not in SPLITTABLE:
        raise TuneError(
            f'{student_config}: train_dataset type {kind!r} is not one the '
            f'tuner can split; use one of {", ".join(SPLITTABLE)}'
        )
    root = train_cfg['dataset_root']
    train_list = train_cfg.get('train_path') or list_file(root, 'train')
    with open(train_list) as f:
        lines = [line for line in f if line.strip()]
    holdout_count = max(1, int(round(len(lines) * fraction)))
    if len(lines) - holdout_count < 2 * config.batch_size:
        raise TuneError(
            f'{train_list}: {len(lines)} training images are too few to carve a '
            f'held-out split from; the tuner needs at least '
            f'{2 * config.batch_size + 1}'
        )
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    start = fold % (len(lines) // holdout_count) * holdout_count
    holdout = set(order[start : start + holdout_count])
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, keep in (('tune_train', False), ('tune_holdout', True)):
        paths[name] = os.path.abspath(os.path.join(out_dir, f'{name}.txt'))
        with open(paths[name], 'w') as f:
            f.writelines(line for i, line in enumerate(lines) if (i in holdout) == keep)
    dataset = {'dataset_root': root}
    if kind == 'OpticDiscSeg':  # fixed list names: the generic Dataset takes any list
        dataset.update(type='Dataset', num_classes=2)
    train = dict(dataset, train_path=paths['tune_train'])
    val = dict(dataset, val_path=paths['tune_holdout'])
    return {'train_dataset': train, 'val_dataset': val}, len(lines) - holdout_count, holdout_count


def search_inputs(teacher_config, teacher_weights, student_config, iters, seed):
    """What a search's trials depend on: the configs as resolved (their _base_ chains
    included), the teacher's weights, the iterations and the seed."""

    def resolved(path):
        text = json.dumps(load_config_dict(path), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    return {
        'teacher_config': resolved(teacher_config),
        'teacher_weights': sha256(teacher_weights),
        'student_config': resolved(student_config),
        'iters': iters,
        'seed': seed,
    }


def check_same_search(out_dir, inputs, names):
    """Records a new search's inputs in out_dir/search.json; refuses (TuneError) to continue
    one whose inputs differ, before anything in out_dir is touched: its trials would mix
    two pairs. `names`: what each input was given as, for the message."""
    path = os.path.join(out_dir, 'search.json')
    if os.path.exists(path):
        with open(path) as f:
            before = json.load(f)
        changed = [key for key in inputs if before.get(key) != inputs[key]]
        if changed:
            key = changed[0]
            raise TuneError(
                f'{out_dir} holds a search with another {key} than {names[key]}: give a new '
                f'--out to search for these inputs, or delete {out_dir} to start over'
            )
        return
    os.makedirs(out_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(inputs, f, indent=2)
