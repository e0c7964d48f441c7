"""What a config's values must be, checked before anything is built, each mistake one line
naming the key: top-level keys, every `type:` against paddleseg's registry (with the
closest valid spelling), the lr scheduler, `pretrained:` entries and numeric values."""

import os

import paddle
from paddleseg.cvlibs import manager

from paddleseg_ext.errors import UserInputError, closest
from paddleseg_ext.pretrained import is_url

# PaddleSeg's keys, plus ours: distill_features (feature distillation), distill_auto_ratio
# (how hard `coef: auto` terms pull), teacher_cache.
KNOWN_TOP_LEVEL_KEYS = (
    'batch_size',
    'iters',
    'train_dataset',
    'val_dataset',
    'optimizer',
    'lr_scheduler',
    'loss',
    'distill_loss',
    'distill_features',
    'distill_auto_ratio',
    'model',
    'export',
    'test_config',
    'to_static_training',
    'teacher_cache',
)

# Which registries a `type:` under each top-level key may name.
_REGISTRIES = {
    'model': (manager.MODELS, manager.BACKBONES),
    'train_dataset': (manager.DATASETS, manager.TRANSFORMS),
    'val_dataset': (manager.DATASETS, manager.TRANSFORMS),
    'loss': (manager.LOSSES,),
    'optimizer': (manager.OPTIMIZERS,),
}
# distill_loss / distill_features are checked by slim.distill, which registers their losses:
# val.py or export.py read a student config without importing it.
# paddleseg's SegBuilder maps these spellings to optimizer classes itself.
_OPTIMIZER_ALIASES = ('sgd', 'adam', 'SGD', 'Adam')


def check_known_keys(mapping, valid, where):
    """An unknown key of `mapping` is an error naming it, the closest valid one and all."""
    for key in mapping:
        if key not in valid:
            raise UserInputError(
                f'{where}: unknown key {key!r}{closest(key, valid)}: valid keys '
                f'are {", ".join(valid)}'
            )


def _check_types(node, where, registries, path):
    if isinstance(node, dict):
        if 'type' in node:
            known = [name for reg in registries for name in reg.components_dict]
            type_name = node['type']
            if type_name not in known and not (
                where == 'optimizer' and type_name in _OPTIMIZER_ALIASES
            ):
                if registries == (manager.LOSSES,):
                    hint = f'registered losses: {", ".join(sorted(known))}'
                else:
                    hint = 'check the spelling' + closest(type_name, known)
                raise UserInputError(f'{path}: {where}: unknown type {type_name!r}: {hint}')
        for value in node.values():
            _check_types(value, where, registries, path)
    elif isinstance(node, list):
        for item in node:
            _check_types(item, where, registries, path)


def _is_lr_scheduler(name):
    found = getattr(paddle.optimizer.lr, str(name), None)
    return isinstance(found, type) and issubclass(found, paddle.optimizer.lr.LRScheduler)


def _check_lr_scheduler(dic, path):
    """paddleseg calls getattr(paddle.optimizer.lr, type)(...): only a scheduler class."""
    lr_type = dic.get('lr_scheduler', {}).get('type')
    if lr_type is not None and not _is_lr_scheduler(lr_type):
        names = [n for n in dir(paddle.optimizer.lr) if _is_lr_scheduler(n)]
        raise UserInputError(
            f'{path}: lr_scheduler: unknown type {lr_type!r}: check the '
            f'spelling{closest(lr_type, names)}'
        )


def _check_pretrained(node, path, where='model'):
    """A local `pretrained:` path must exist; URLs are fetched when the model is built."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'pretrained' and value is not None and not isinstance(value, str):
                raise UserInputError(
                    f'{path}: {where}.pretrained: {value!r:.60} is not a path or URL: give '
                    f'the weights file, or Null to train from scratch'
                )
            if key == 'pretrained' and isinstance(value, str) and value:
                if not is_url(value) and not os.path.exists(value):
                    raise UserInputError(
                        f"{path}: {where}.pretrained: file '{value}' does not exist: fix "
                        f'the path, or set it to Null to train from scratch'
                    )
            _check_pretrained(value, path, f'{where}.{key}' if isinstance(value, dict) else where)


def _float_hint(text):
    """YAML 1.1 reads 1e-4 (no dot) as a string; say how to write it as a number."""
    try:
        float(text)
    except ValueError:
        return ''
    mantissa, _, exponent = text.lower().partition('e')
    return f' (YAML reads it as text: write {mantissa}.0e{exponent})' if exponent else ''


def _check_values(dic, path):
    """Values that paddleseg passes on unchecked, failing later inside paddle's ops."""
    for key in ('batch_size', 'iters'):
        value = dic.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            raise UserInputError(f'{path}: {key}: {value!r} is not a positive integer')
    for section in ('optimizer', 'lr_scheduler'):
        for key, value in (dic.get(section) or {}).items():
            if key != 'type' and isinstance(value, str):
                raise UserInputError(
                    f'{path}: {section}.{key}: {value!r} is not a number' + _float_hint(value)
                )
    # paddleseg reads a warmup only as this pair, and asserts deep in the build otherwise.
    lr_scheduler = dic.get('lr_scheduler') or {}
    if 'warmup_iters' in lr_scheduler or 'warmup_start_lr' in lr_scheduler:
        warmup_iters = lr_scheduler.get('warmup_iters')
        if type(warmup_iters) is not int or warmup_iters <= 0:
            raise UserInputError(
                f'{path}: lr_scheduler.warmup_iters: {warmup_iters!r} is not '
                f'a positive integer (a warmup needs warmup_iters and '
                f'warmup_start_lr)'
            )
        if 'warmup_start_lr' not in lr_scheduler:
            raise UserInputError(
                f'{path}: lr_scheduler: warmup_iters needs warmup_start_lr, '
                f'the learning rate the warmup starts from (e.g. 1.0e-4)'
            )
    distill_loss = dic.get('distill_loss')
    if isinstance(distill_loss, dict):
        types, coef = distill_loss.get('types'), distill_loss.get('coef')
        # paddleseg would repeat the one type once per coef, silently.
        if isinstance(types, list) and len(types) == 1 and isinstance(coef, list) and len(coef) > 1:
            raise UserInputError(
                f'{path}: distill_loss: coef {coef} has {len(coef)} weights for one type: '
                f'PaddleSeg reads a coef list as one weight per model output, and '
                f"distill_loss compares the student's main output with the teacher's; give "
                f'one coef per type, e.g. coef: [{coef[0]}]'
            )
    loss = dic.get('loss')
    if isinstance(loss, dict):
        types, coef = loss.get('types'), loss.get('coef')
        if not (isinstance(types, list) and types and isinstance(coef, list) and coef):
            raise UserInputError(
                f'{path}: loss needs non-empty `types` and `coef` lists '
                f'(one coef per type), got types {types!r}, coef {coef!r}'
            )


def check_config_dict(dic, path):
    """Every check above that reads the whole config (after --opts are applied)."""
    for where, registries in _REGISTRIES.items():
        _check_types(dic.get(where), where, registries, path)
    _check_lr_scheduler(dic, path)
    _check_pretrained(dic.get('model'), path)
    _check_values(dic, path)
