"""Loading PaddleSeg YAML configs with one clear line for every mistake.

paddleseg's `Config` asserts, and its builder raises deep inside object construction;
here the same YAML is read as plain data (config_yaml.py), overridden by the flags and
--opts, and checked (config_checks.py) before paddleseg's `Config` holds it.
"""

import os

from paddleseg.cvlibs import Config
from paddleseg.cvlibs.config import update_config_dict

from paddleseg_ext.config_checks import KNOWN_TOP_LEVEL_KEYS, check_config_dict, check_known_keys
from paddleseg_ext.config_yaml import check_evaluated_strings, load_config_dict
from paddleseg_ext.errors import UserInputError

TRAINING_KEYS = ('model', 'train_dataset', 'optimizer', 'lr_scheduler', 'loss')


def load_config(
    path, learning_rate=None, batch_size=None, iters=None, opts=None, required=TRAINING_KEYS
):
    """Reads, overrides (flags, --opts key=value) and validates a YAML config.

    Returns paddleseg's `Config`, so paddleseg's `SegBuilder` builds it as usual.
    """
    if not os.path.exists(path):
        raise UserInputError(f"config file '{path}' does not exist: check the path")
    if not path.endswith(('.yml', '.yaml')):
        raise UserInputError(f"config file '{path}' must be YAML (.yml or .yaml)")
    dic = load_config_dict(path)
    if not isinstance(dic, dict):
        raise UserInputError(f'{path}: expected a mapping of keys at the top level')
    check_known_keys(dic, KNOWN_TOP_LEVEL_KEYS, path)
    try:
        dic = update_config_dict(
            dic, learning_rate=learning_rate, batch_size=batch_size, iters=iters, opts=opts
        )
    except (AssertionError, KeyError) as exc:
        raise UserInputError(f'{path}: cannot apply --opts {opts}: {exc}') from None
    check_evaluated_strings(dic, path)
    check_config_dict(dic, path)
    for key in required:
        if key not in dic:
            raise UserInputError(
                f'{path}: missing key {key!r}: this config needs {", ".join(required)}'
            )
    config = Config.__new__(Config)
    config.dic = dic
    config.path = path  # for messages about what is built from it
    if 'batch_size' not in dic and 'train_dataset' not in required:
        return config  # a model-only config (a teacher's): the training checks do not apply
    try:
        Config._build_default_checker().apply_all_rules(config)
    except (AssertionError, ValueError, KeyError, RuntimeError) as exc:
        message = ' '.join(str(exc).split()).split('the error message is: ')[-1]
        raise UserInputError(f'{path}: {message}') from None
    return config
