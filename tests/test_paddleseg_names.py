"""A paddleseg registry name we replace keeps paddleseg's meaning: where paddleseg's own
component works (its CrossEntropyLoss on paddle 2.6; its datasets on both stacks), ours
gives the same results on the same inputs."""

import os

import numpy as np
import paddle
import paddleseg
import pytest
from paddleseg.cvlibs import manager
from paddleseg.datasets import Dataset as PaddleSegDataset
from paddleseg.datasets import OpticDiscSeg as PaddleSegOpticDiscSeg
from paddleseg.models.losses.cross_entropy_loss import (
    CrossEntropyLoss as PaddleSegCrossEntropyLoss,
)
from paddleseg.transforms import Normalize, Resize

from paddleseg_ext import compat


def test_every_replaced_name_is_tested_here():
    """A name registered by our code that paddleseg also defines is a replacement."""
    paddleseg_names = set()
    for module in (paddleseg.datasets, paddleseg.models, paddleseg.models.losses):
        paddleseg_names |= set(dir(module))
    replaced = {
        (registry, name)
        for registry in ('DATASETS', 'LOSSES', 'MODELS', 'BACKBONES', 'TRANSFORMS')
        for name, component in getattr(manager, registry).components_dict.items()
        if component.__module__.startswith('paddleseg_ext') and name in paddleseg_names
    }
    assert replaced == {
        ('DATASETS', 'Dataset'),
        ('DATASETS', 'OpticDiscSeg'),
        ('LOSSES', 'CrossEntropyLoss'),
    }


@pytest.mark.skipif(
    compat.PADDLE_3, reason="paddleseg's own CrossEntropyLoss fails on paddle 3 (the repair)"
)
@pytest.mark.parametrize(
    'kwargs',
    [
        {},
        {'avg_non_ignore': False},
        {'weight': [0.3, 1.0, 2.0]},
        {'top_k_percent_pixels': 0.25},
        {'weight': [0.3, 1.0, 2.0], 'top_k_percent_pixels': 0.5},
    ],
)
def test_cross_entropy_loss_gives_paddleseg_loss(kwargs):
    rng = np.random.default_rng(0)
    logits = paddle.to_tensor(rng.normal(size=(2, 3, 8, 8)).astype('float32'))
    label = rng.integers(0, 3, size=(2, 8, 8))
    label[0, :2] = 255
    label = paddle.to_tensor(label.astype('int64'))
    ours = manager.LOSSES['CrossEntropyLoss'](**kwargs)
    theirs = PaddleSegCrossEntropyLoss(**kwargs)
    assert type(ours) is not PaddleSegCrossEntropyLoss
    np.testing.assert_allclose(float(ours(logits, label)), float(theirs(logits, label)), rtol=1e-6)


def transforms():
    return [Resize(target_size=(48, 40)), Normalize()]


def assert_same_samples(ours, theirs):
    assert ours.file_list == theirs.file_list
    for index in range(len(theirs)):
        expected, actual = theirs[index], ours[index]
        np.testing.assert_array_equal(actual['img'], expected['img'])
        np.testing.assert_array_equal(actual['label'], expected['label'])


@pytest.mark.parametrize('mode', ['train', 'val'])
def test_dataset_gives_paddleseg_samples(synthetic_root, mode):
    arguments = dict(
        mode=mode,
        dataset_root=synthetic_root,
        num_classes=2,
        train_path=os.path.join(synthetic_root, 'train_list.txt'),
        val_path=os.path.join(synthetic_root, 'val_list.txt'),
    )
    ours = manager.DATASETS['Dataset'](transforms=transforms(), **arguments)
    assert type(ours) is not PaddleSegDataset
    assert_same_samples(ours, PaddleSegDataset(transforms=transforms(), **arguments))


@pytest.mark.parametrize('mode', ['train', 'val'])
def test_optic_disc_seg_gives_paddleseg_samples(synthetic_root, mode):
    ours = manager.DATASETS['OpticDiscSeg'](
        dataset_root=synthetic_root, transforms=transforms(), mode=mode
    )
    assert type(ours) is not PaddleSegOpticDiscSeg
    theirs = PaddleSegOpticDiscSeg(dataset_root=synthetic_root, transforms=transforms(), mode=mode)
    assert_same_samples(ours, theirs)
