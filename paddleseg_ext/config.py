"""Loading PaddleSeg YAML configs with one clear line for every mistake.

paddleseg's `Config` asserts, and its builder raises deep inside object construction;
here the same YAML is checked first: the file, top-level keys and every `type:` are
validated against paddleseg's registry, naming the closest valid spelling.
"""

import copy
import os

import paddle
from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.cvlibs.config import update_config_dict

from paddleseg_ext.config_yaml import check_evaluated_strings, load_config_dict
from paddleseg_ext.errors import UserInputError, closest
from paddleseg_ext.pretrained import is_url, localize

# PaddleSeg's keys, plus ours: distill_features (feature distillation), teacher_cache.
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
    for where, registries in _REGISTRIES.items():
        _check_types(dic.get(where), where, registries, path)
    _check_lr_scheduler(dic, path)
    _check_pretrained(dic.get('model'), path)
    _check_values(dic, path)
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


def build(builder: SegBuilder, component: str):
    """`builder.<component>`, with construction failures reported as one line."""
    if component == 'model':
        localize(builder.config.dic.get('model'))
    try:
        if component == 'model' and _model_builds_alone(builder.config):
            return builder.build_component(builder.config.model_cfg)
        return getattr(builder, component)
    except UserInputError:
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, UserInputError):  # raised inside a component's constructor
            raise cause from None
        message = ' '.join(str(exc).split())
        if component == 'model' and (
            'download' in message.lower()
            or 'url' in message.lower()
            or 'connection' in message.lower()
        ):
            raise UserInputError(
                f'building the model failed while fetching pretrained weights ({message}): '
                f'download the file yourself and set `pretrained:` to its local path, or Null'
            ) from None
        source = getattr(builder.config, 'path', 'the config')
        raise UserInputError(f'{source}: building {component} failed: {message}') from None


def dataset_task(dataset_cfg):
    """The task a dataset config's `type` declares ('classification'); paddleseg's datasets
    declare none and are segmentation."""
    dataset_class = manager.DATASETS.components_dict.get(dataset_cfg.get('type'))
    return getattr(dataset_class, 'task', 'segmentation')


def image_channels(dataset_cfg):
    """The channels of a dataset config's images: img_channels, paddleseg's 3 if unset."""
    return dataset_cfg.get('img_channels', 3)


def _model_builds_alone(config):
    """Whether the model is built from its own config, not through SegBuilder.model, which
    reads num_classes and in_channels from the train dataset's class (NUM_CLASSES,
    IMG_CHANNELS): a model-only config (a teacher's) has no dataset, and a classification
    dataset takes both from YAML, where they must agree with the model's."""
    dataset_cfg = config.train_dataset_cfg
    if not dataset_cfg:
        return True
    if dataset_task(dataset_cfg) != 'classification':
        return False
    model_cfg = config.model_cfg
    for model_key, dataset_key, default in (
        ('num_classes', 'num_classes', None),
        ('in_channels', 'img_channels', 3),
    ):
        model_value = model_cfg.get(model_key, default)
        dataset_value = dataset_cfg.get(dataset_key, default)
        if model_value != dataset_value:
            raise UserInputError(
                f'{getattr(config, "path", "the config")}: model.{model_key} is '
                f'{model_value} but train_dataset.{dataset_key} is {dataset_value}: set '
                f'them equal'
            )
    return True


def _drop_pretrained(cfg):
    if isinstance(cfg, dict):
        cfg.pop('pretrained', None)
        for value in cfg.values():
            _drop_pretrained(value)


def build_model_without_weights(config):
    """The config's architecture; its weights path (model.pretrained) is returned apart,
    so config checks run before any weights are read. Backbone `pretrained:` entries
    (ImageNet URLs) are dropped too: the model's own weights replace them all."""
    model_cfg = copy.deepcopy(config.dic['model'])
    weights = model_cfg.get('pretrained')
    _drop_pretrained(model_cfg)
    config.dic['model'] = model_cfg
    return build(SegBuilder(config), 'model'), weights
