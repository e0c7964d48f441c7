"""Configs, weights and downloads from a stranger (docs/safety.md): each hostile input,
through the real CLIs, ends with exit 1 and exactly one `error:` line naming the file or
key, within seconds, under a 3 GB address-space limit, with a marker file proving that
nothing ran. The every-route cases of weights files are in test_weights.py."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import hostile
import numpy as np
import paddle
import paddleseg
import pytest
import yaml
from conftest import REPO_ROOT, TEST_CONFIGS, data_opts, error_line, run_cli
from paddleseg.cvlibs import SegBuilder
from test_pretrained import server  # noqa: F401  (the local HTTP server fixture)
from test_weights import TINY_STUDENT, TINY_TEACHER, write_config

from paddleseg_ext import config_yaml, pretrained, weights
from paddleseg_ext.components import build
from paddleseg_ext.config import load_config
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.files import MAX_BYTES_ENV

# The payloads test_weights.py already sends through every route, val.py among them.
VAL_ONLY = sorted(set(hostile.WEIGHTS) - {'os_system', 'object_dtype'})


def val(config, model_path, synthetic_root, env=None):
    return run_cli(
        'val.py',
        '--config',
        str(config),
        '--model_path',
        str(model_path),
        *data_opts(synthetic_root),
        timeout=60,
        env=env,
        limit_memory=True,
    )


@pytest.mark.parametrize('payload', VAL_ONLY + sorted(hostile.NOT_FILES))
def test_hostile_weights_are_one_line(payload, tmp_path, synthetic_root):
    make, expected = {**hostile.WEIGHTS, **hostile.NOT_FILES}[payload]
    marker = tmp_path / 'marker'
    path = tmp_path / 'model.pdparams'
    make(str(path), marker)
    error_line(val(TINY_STUDENT, path, synthetic_root), f'{path}: ', expected)
    assert not marker.exists()


def test_weights_over_the_size_limit_are_refused_and_the_limit_can_be_raised(
    synthetic_root, teacher_weights, monkeypatch
):
    env = dict(os.environ, **{MAX_BYTES_ENV: '1000'})
    result = val(TINY_TEACHER, teacher_weights, synthetic_root, env)
    error_line(result, teacher_weights, 'over the limit of 1000 bytes', MAX_BYTES_ENV)
    monkeypatch.setenv(MAX_BYTES_ENV, str(os.path.getsize(teacher_weights)))
    assert weights.load(teacher_weights)
    monkeypatch.setenv(MAX_BYTES_ENV, 'lots')
    with pytest.raises(UserInputError, match=f'{MAX_BYTES_ENV}=.lots. is not a positive'):
        weights.load(teacher_weights)


@pytest.mark.parametrize('payload', sorted(hostile.WEIGHTS))
def test_hostile_weights_in_process(payload, tmp_path):
    """The same reader the CLIs use: the refusal class (a planted file stops --resume_model
    auto; only a damaged one is skipped) and no code run."""
    make, expected = hostile.WEIGHTS[payload]
    marker = tmp_path / 'marker'
    path = str(tmp_path / 'w.pdparams')
    make(path, marker)
    with pytest.raises(UserInputError) as raised:
        weights.check_state_dict(weights.load(path), path)
    assert expected in str(raised.value) and '\n' not in str(raised.value)
    damaged = payload == 'declared_length'
    assert isinstance(raised.value, weights.DamagedWeights if damaged else weights.RefusedWeights)
    assert not marker.exists()


@pytest.mark.parametrize(
    'name,change',
    [
        ('train_state.pdstates', {'iter': 'two'}),
        ('train_state.pdstates', {'auxiliary': {'connector.weight': 1}}),
        ('model.pdopt', None),
    ],
    ids=['iter', 'auxiliary', 'pdopt'],
)
def test_checkpoint_contents_of_the_wrong_type_are_one_line(
    name, change, tmp_path, synthetic_root, teacher_weights
):
    """Files that unpickle but do not hold what a checkpoint holds stop --resume_model."""
    folder = tmp_path / 'out' / 'iter_2'
    shutil.copytree(os.path.dirname(teacher_weights), folder)
    content = {**weights.load(str(folder / name)), **change} if change else [1, 2]
    paddle.save(content, str(folder / name))
    result = run_cli(
        'train.py',
        '--config',
        TINY_TEACHER,
        '--resume_model',
        str(folder),
        '--iters',
        '3',
        '--save_dir',
        str(tmp_path / 'out'),
        *data_opts(synthetic_root),
        timeout=60,
        limit_memory=True,
    )
    error_line(result, f'{folder / name}', 'refused to load')
    assert not os.path.exists(tmp_path / 'out' / 'iter_3')


# ---- configs ----

EVIL_NORM = "__import__('os').system('touch {marker}') or nn.LayerNorm"


def vit_config(path, **model):
    """A tiny ViT (paddleseg evaluates its norm_layer string) on the tiny base."""
    model = {
        'type': 'VisionTransformer',
        'img_size': 64,
        'patch_size': 16,
        'embed_dim': 16,
        'depth': 1,
        'num_heads': 1,
        **model,
    }
    dic = {'_base_': os.path.join(TEST_CONFIGS, 'tiny_base.yml'), 'model': model}
    path.write_text(yaml.safe_dump(dic))
    return str(path)


@pytest.mark.parametrize('cli', ['val', 'train', 'distill_teacher'])
def test_evaluated_config_strings_are_refused(cli, tmp_path, synthetic_root, teacher_weights):
    marker = tmp_path / 'marker'
    config = vit_config(tmp_path / 'vit.yml', norm_layer=EVIL_NORM.format(marker=marker))
    flags = ['--iters', '1', '--save_dir', str(tmp_path / 'out'), *data_opts(synthetic_root)]
    if cli == 'val':
        args = ['val.py', '--config', config, '--model_path', teacher_weights]
        args += data_opts(synthetic_root)
    elif cli == 'train':
        args = ['train.py', '--config', config, *flags]
    else:
        args = ['distill_train.py', '--teacher_config', config, '--student_config', TINY_STUDENT]
        args += ['--teacher_model_path', teacher_weights, *flags]
    result = run_cli(*args, timeout=60, limit_memory=True)
    error_line(result, config, 'model.norm_layer', 'nn.LayerNorm')
    assert not marker.exists()


def write(path, text):
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return str(path)


def config_cases(tmp_path):
    """{case: (config path, what its error line names)}."""
    base = os.path.join(TEST_CONFIGS, 'tiny_base.yml')
    self_path = tmp_path / 'self.yml'
    loop_a, loop_b = tmp_path / 'loop_a.yml', tmp_path / 'loop_b.yml'
    write(loop_b, '_base_: loop_a.yml\n')
    return {
        'python_name': (
            write(
                tmp_path / 'name.yml',
                f'_base_: {base}\nlr_scheduler:\n  type: LambdaDecay\n'
                f'  learning_rate: 0.01\n  lr_lambda: !!python/name:sys.exit\n',
            ),
            'python/name:sys.exit',
        ),
        'anchor_bomb': (
            write(tmp_path / 'bomb.yml', f'_base_: {base}\nmodel:\n  ' + hostile.anchor_bomb()),
            'anchor bomb',
        ),
        'base_self': (write(self_path, '_base_: self.yml\n'), 'includes itself'),
        'base_loop': (write(loop_a, '_base_: loop_b.yml\n'), 'includes itself'),
        'base_dir': (write(tmp_path / 'dir.yml', f'_base_: {tmp_path}\n'), 'is a folder'),
        'base_not_str': (write(tmp_path / 'num.yml', '_base_: 5\n'), '_base_ is 5'),
        'base_list_dict': (write(tmp_path / 'ld.yml', '_base_: [a.yml, {x: 1}]\n'), '_base_ is'),
        'not_utf8': (write(tmp_path / 'latin.yml', b'batch_size: 2 # caf\xe9\n'), 'not UTF-8'),
        'deep': (write(tmp_path / 'deep.yml', 'model: ' + '[' * 5000 + ']' * 5000), 'deeper'),
    }


CONFIG_CASES = [
    'python_name',
    'anchor_bomb',
    'base_self',
    'base_loop',
    'base_dir',
    'base_not_str',
    'base_list_dict',
    'not_utf8',
    'deep',
]


@pytest.mark.parametrize('case', CONFIG_CASES)
def test_hostile_configs_are_one_line(case, tmp_path, synthetic_root):
    config, named = config_cases(tmp_path)[case]
    save_dir = tmp_path / 'out'
    started = time.monotonic()
    result = run_cli(
        'train.py',
        '--config',
        config,
        '--iters',
        '1',
        '--save_dir',
        str(save_dir),
        *data_opts(synthetic_root),
        timeout=60,
        limit_memory=True,
    )
    error_line(result, named)
    assert time.monotonic() - started < 30
    assert not os.path.exists(save_dir / 'iter_1')


def test_base_merges_as_paddleseg_does(tmp_path):
    """The child's keys recursively over the base's, `_inherited_: false` replacing, several
    bases in order, paths relative to the config's folder: what paddleseg's own reader
    gives for plain files; the shipped configs load in test_shipped_configs.py."""
    from paddleseg.cvlibs.config import parse_from_yaml

    (tmp_path / 'sub').mkdir()
    write(tmp_path / 'sub' / 'a.yml', 'x: {p: 1, q: 2}\nl: [1]\nkeep: a\nz: {m: 1}\n')
    write(tmp_path / 'sub' / 'b.yml', 'keep: b\nonly_b: 1\ny: {r: 1}\n')
    config = write(
        tmp_path / 'sub' / 'child.yml',
        '_base_: [a.yml, b.yml]\nx: {q: 3}\nl: [2]\nz: {_inherited_: false, n: 1}\n'
        'y: {_inherited_: false, s: 1}\n',
    )
    got = config_yaml.load_config_dict(config)
    assert got == parse_from_yaml(config)
    assert got['x'] == {'p': 1, 'q': 3} and got['z'] == {'n': 1} and got['keep'] == 'a'


def test_opts_and_scheduler_types_are_checked_too(tmp_path):
    """--opts cannot bring an evaluated string back, and lr_scheduler.type names only a
    scheduler class (paddleseg calls getattr(paddle.optimizer.lr, type)(...))."""
    with pytest.raises(UserInputError, match='model.backbone.norm_layer'):
        load_config(TINY_STUDENT, opts=['model.backbone.norm_layer=__import__("os")'])
    config = write(
        tmp_path / 'lr.yml',
        f'_base_: {TINY_STUDENT}\nlr_scheduler: {{type: cosine_decay, learning_rate: 0.1}}\n',
    )
    with pytest.raises(UserInputError, match="lr_scheduler: unknown type 'cosine_decay'"):
        load_config(config)


def test_every_eval_in_paddleseg_is_accounted_for():
    """paddleseg's `eval(` calls: those of config strings are EVALUATED_KEYS; the others
    check their argument against a module's names first. A new paddleseg must be read again."""
    root = os.path.dirname(paddleseg.__file__)
    found = set()
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith('.py'):
                with open(os.path.join(folder, name), encoding='utf-8') as f:
                    text = f.read()
                for match in re.finditer(r'(?<![\w.])eval\(([^)]*)\)', text):
                    found.add((os.path.relpath(os.path.join(folder, name), root), match.group(1)))
    assert found == {
        ('models/backbones/vision_transformer.py', 'norm_layer'),
        ('models/backbones/cae.py', 'norm_layer'),
        ('models/pp_liteseg.py', '"layers." + arm_type'),  # asserts hasattr(layers, ...)
        ('models/mobileseg.py', '"layers." + arm_type'),  # asserts hasattr(layers, ...)
        ('models/layers/activation.py', '"nn.layer.activation.{}('),  # a key of its dict
    }
    assert set(config_yaml.EVALUATED_KEYS) == {'norm_layer'}


# ---- downloads ----


def test_file_url_of_a_device_is_refused(tmp_path, synthetic_root):
    cache = tmp_path / 'cache'
    config = write_config(tmp_path / 's.yml', TINY_STUDENT, pretrained='file:///dev/zero')
    env = dict(os.environ, PADDLESEG_DISTILL_CACHE=str(cache))
    result = run_cli(
        'train.py',
        '--config',
        config,
        '--iters',
        '1',
        '--save_dir',
        str(tmp_path / 'out'),
        *data_opts(synthetic_root),
        env=env,
        timeout=60,
        limit_memory=True,
    )
    error_line(result, 'file:///dev/zero', 'not a regular file')
    assert not cache.exists() or os.listdir(cache) == []


def test_downloads_are_bounded(server, tmp_path, monkeypatch):  # noqa: F811
    base, files, _ = server
    files['/big.pdparams'] = b'x' * 5000
    monkeypatch.setenv(MAX_BYTES_ENV, '1000')
    with pytest.raises(UserInputError, match='over the limit of 1000 bytes'):
        pretrained.local_path(f'{base}/big.pdparams')
    assert os.listdir(tmp_path / 'cache') == []


def test_interrupted_download_leaves_no_file(server, tmp_path, monkeypatch):  # noqa: F811
    base, files, _ = server
    files['/w.pdparams'] = b'x' * 5000

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, '_BLOCK', 100)
    real_write = os.fdopen

    def fdopen(*args, **kwargs):
        handle = real_write(*args, **kwargs)
        handle.write = interrupt
        return handle

    monkeypatch.setattr(pretrained.os, 'fdopen', fdopen)
    with pytest.raises(KeyboardInterrupt):
        pretrained.local_path(f'{base}/w.pdparams')
    assert os.listdir(tmp_path / 'cache') == []


def test_killed_download_is_cleaned_up_by_the_next(server, tmp_path):  # noqa: F811
    """kill -9 mid-download leaves its partial file; the next download removes it."""
    base, files, _ = server
    files['/w.pdparams'] = b'w' * (4 << 20)
    cache = tmp_path / 'cache'
    script = (
        f'from paddleseg_ext import pretrained; pretrained.local_path("{base}/slow/w.pdparams")'
    )
    env = dict(os.environ, PADDLESEG_DISTILL_CACHE=str(cache), PYTHONPATH=REPO_ROOT)
    child = subprocess.Popen([sys.executable, '-c', script], env=env)
    try:
        deadline = time.monotonic() + 60
        while not any(
            name.startswith('.download-') and os.path.getsize(cache / name)
            for name in (os.listdir(cache) if cache.exists() else [])
        ):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    path = pretrained.local_path(f'{base}/w.pdparams')
    assert os.listdir(cache) == [os.path.basename(path)]


@pytest.mark.parametrize('payload', ['legit', 'object_dtype'])
def test_self_loading_backbone_gets_our_checked_file(server, tmp_path, payload):  # noqa: F811
    """paddleseg's ViT reads its `pretrained:` itself (paddle.load): it gets our one checked
    download, and a file our reader refuses stops before its paddle.load."""
    base, files, requests = server
    source = tmp_path / 'vit.pdparams'
    if payload == 'legit':
        paddle.save({'pos_embed': paddle.zeros([1, 17, 16])}, str(source))
    else:
        hostile.object_dtype(str(source), None)
    files['/vit%25.pdparams'] = source.read_bytes()
    url = f'{base}/vit%25.pdparams'
    config = load_config(vit_config(tmp_path / 'vit.yml', pretrained=url), required=('model',))
    if payload == 'legit':
        model = build(SegBuilder(config), 'model')
        assert isinstance(model, paddle.nn.Layer)
        np.testing.assert_array_equal(model.pos_embed.numpy(), np.zeros([1, 17, 16], 'float32'))
    else:
        with pytest.raises(weights.RefusedWeights, match="array of dtype 'V8'"):
            build(SegBuilder(config), 'model')
    assert requests == ['/vit%25.pdparams']


def test_paddleseg_downloader_is_refused():
    """Every URL goes through pretrained.local_path; paddleseg's own downloader is off."""
    from paddleseg import utils

    with pytest.raises(UserInputError, match='a download outside paddleseg_ext.pretrained'):
        utils.download_pretrained_model('https://example.com/w.pdparams')
