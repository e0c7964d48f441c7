"""How far the replay cache's teacher logits are from the teacher's own on the same views.

For the first N training samples of a student config (their random views drawn as training
draws them, seed 0), the teacher runs on each view (online) and the replay cache serves the
same view from the image's canonical logits. The gap says whether a teacher suits the
replay: a teacher trained at one scale answers a rescaled view differently from its rescaled
canonical answer.
"""

import tempfile

import numpy as np
import paddle
from paddleseg.cvlibs import SegBuilder

from paddleseg_ext.components import build, build_model_without_weights
from paddleseg_ext.config import load_config
from paddleseg_ext.datasets.source_map import OFFSET, replay_plan, track_sources
from paddleseg_ext.engine.sampling import SeededSamples
from paddleseg_ext.errors import UserInputError
from slim.distill.teacher import FrozenTeacher
from slim.distill.teacher_replay import TeacherReplayCache


def replay_error(teacher_config, teacher_weights, student_config, samples=40, opts=None):
    """{'relative_error' (mean |replayed - online| / mean |online|, over the pixels the
    views show), 'padded_relative_error', 'argmax_agreement', 'samples'}."""

    config = load_config(student_config, opts=opts)
    dataset = build(SegBuilder(config), 'train_dataset')
    prefix, blocker = replay_plan(config.train_dataset_cfg.get('transforms', []))
    if blocker:
        raise UserInputError(f'{student_config}: {blocker}')
    model, _ = build_model_without_weights(load_config(teacher_config, required=('model',)))
    teacher = FrozenTeacher(model, [], 'dygraph')
    teacher.load(teacher_weights)
    track_sources(dataset, prefix)
    cache = TeacherReplayCache(teacher, dataset, prefix, tempfile.mkdtemp(), 'replay_error')
    seeded = SeededSamples(dataset, seed=0)
    inside_errors, padded_errors, agreements = [], [], []
    for index in range(min(samples, len(dataset))):
        image, _, sample_index, source = seeded[(index, 0)]
        replayed, _ = cache(
            paddle.to_tensor(image[np.newaxis]),
            paddle.to_tensor([sample_index]),
            paddle.to_tensor(source[None]),
        )
        online, _ = teacher(paddle.to_tensor(image[np.newaxis]))
        replayed, online = replayed.numpy()[0], online.numpy()[0]
        scale = np.abs(online).mean()
        inside = source >= OFFSET
        difference = np.abs(replayed - online)
        inside_errors.append(difference[:, inside].mean() / scale)
        if (~inside).any():
            padded_errors.append(difference[:, ~inside].mean() / scale)
        agreements.append((replayed.argmax(0) == online.argmax(0)).mean())
    return {
        'relative_error': float(np.mean(inside_errors)),
        'padded_relative_error': float(np.mean(padded_errors)) if padded_errors else None,
        'argmax_agreement': float(np.mean(agreements)),
        'samples': len(agreements),
    }
