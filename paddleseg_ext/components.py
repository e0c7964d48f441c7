"""Building a checked config's components with one line for every failure, and what a
dataset config declares (its task, its image channels)."""

import copy

from paddleseg.cvlibs import SegBuilder, manager

from paddleseg_ext.errors import UserInputError
from paddleseg_ext.pretrained import localize


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
    (ImageNet URLs) are dropped too: the model's own weights replace them all. `config`
    itself is left as it was."""
    model_cfg = copy.deepcopy(config.dic['model'])
    weights = model_cfg.get('pretrained')
    _drop_pretrained(model_cfg)
    without_weights = copy.copy(config)
    without_weights.dic = {**config.dic, 'model': model_cfg}
    return build(SegBuilder(without_weights), 'model'), weights
