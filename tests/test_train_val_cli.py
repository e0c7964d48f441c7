"""End-to-end tests of train.py and val.py as a user runs them (subprocesses, tiny configs).

Runs are shared through module-scoped fixtures, and independent runs go concurrently (each
script spends most of its time importing paddle, not computing). A failing run on bad input
is killed after BAD_INPUT_TIMEOUT seconds, so a hang is reported instead of blocking pytest.
"""

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import yaml
from conftest import TEST_CONFIGS, data_opts, error_line, run_cli

from paddleseg_ext import weights

TINY_STUDENT = os.path.join(TEST_CONFIGS, 'tiny_student.yml')

# (height, width) of the images of a dataset this project did not generate; train and val
# get one of each. Odd sizes, bigger and smaller than the 64x64 network input.
FOREIGN_SIZES = [(37, 53), (80, 45), (64, 64), (100, 70)]

MODEL_YAML = """\
model:
  type: DeepLabV3P
  backbone: {type: ResNet18_vd, output_stride: 16, pretrained: Null}
  num_classes: 2
  backbone_indices: [0, 3]
  aspp_ratios: [1, 6, 12, 18]
  aspp_out_channels: 256
  align_corners: False
  pretrained: Null
"""


def run_parallel(commands, workers=4, timeout=300):
    """{name: CompletedProcess} for {name: argv of run_cli}, at most `workers` at a time.

    A run past `timeout` is killed (SIGKILL) and its entry is the TimeoutExpired.
    """

    def run(name):
        try:
            return run_cli(*commands[name], timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return exc

    names = list(commands)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, names))
    return dict(zip(names, results))


def snapshot(folder):
    """Relative paths of everything under folder (None if it does not exist)."""
    if not os.path.exists(folder):
        return None
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), folder))
    return found


# --------------------------------------------------------------------------------------------
# A dataset written here, in PaddleSeg's generic list-file layout.


def write_foreign_dataset(root):
    """Images (jpg and png, odd sizes) + 0/1 labels with a few 255 pixels, list files."""
    rng = np.random.default_rng(7)
    os.makedirs(os.path.join(root, 'images'))
    os.makedirs(os.path.join(root, 'annotations'))
    lines = {'train': [], 'val': []}
    index = 0
    for split in ('train', 'val'):
        for height, width in FOREIGN_SIZES:
            ys, xs = np.mgrid[0:height, 0:width]
            cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
            radius = rng.uniform(0.2, 0.35) * min(height, width)
            label = (((ys - cy) ** 2 + (xs - cx) ** 2) < radius**2).astype(np.uint8)
            image = rng.integers(0, 80, size=(height, width, 3)).astype(np.uint8)
            image[label == 1] += np.array([150, 60, 20], dtype=np.uint8)  # BGR: blue-ish disc
            label[rng.integers(0, height, 5), rng.integers(0, width, 5)] = 255
            ext = 'jpg' if index % 2 == 0 else 'png'
            image_rel = f'images/{split}_{index}.{ext}'
            label_rel = f'annotations/{split}_{index}.png'
            cv2.imwrite(os.path.join(root, image_rel), image)
            cv2.imwrite(os.path.join(root, label_rel), label)
            lines[split].append(f'{image_rel} {label_rel}\n')
            index += 1
    for split, split_lines in lines.items():
        with open(os.path.join(root, f'{split}.txt'), 'w') as f:
            f.writelines(split_lines)
    return root


def write_foreign_config(path, root, iters=3):
    """A complete config (no _base_) on the generic `type: Dataset`."""
    transforms = (
        '  transforms:\n    - {type: Resize, target_size: [64, 64]}\n    - {type: Normalize}\n'
    )
    text = (
        f'batch_size: 2\n'
        f'iters: {iters}\n'
        f'train_dataset:\n'
        f'  type: Dataset\n'
        f'  dataset_root: {root}\n'
        f'  train_path: {os.path.join(root, "train.txt")}\n'
        f'  num_classes: 2\n'
        f'  mode: train\n' + transforms + f'val_dataset:\n'
        f'  type: Dataset\n'
        f'  dataset_root: {root}\n'
        f'  val_path: {os.path.join(root, "val.txt")}\n'
        f'  num_classes: 2\n'
        f'  mode: val\n' + transforms + 'optimizer: {type: sgd, momentum: 0.9}\n'
        'lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01, end_lr: 0, power: 0.9}\n'
        'loss:\n'
        '  types:\n'
        '    - type: CrossEntropyLoss\n'
        '  coef: [1]\n' + MODEL_YAML
    )
    with open(path, 'w') as f:
        f.write(text)
    return path


def list_pairs(root, split):
    with open(os.path.join(root, f'{split}.txt')) as f:
        return [[os.path.join(root, item) for item in line.split()] for line in f if line.strip()]


# --------------------------------------------------------------------------------------------
# The tiny OpticDiscSeg run: train with eval + VisualDL, then val.py.


@pytest.fixture(scope='module')
def tiny_run(synthetic_root, tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp('tiny_run') / 'out')
    train = run_cli(
        'train.py',
        '--config',
        TINY_STUDENT,
        '--iters',
        '4',
        '--save_interval',
        '2',
        '--do_eval',
        '--use_vdl',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
    )
    assert train.returncode == 0, train.stderr[-3000:]
    metrics_path = os.path.join(save_dir, 'val_metrics.json')
    val = run_cli(
        'val.py',
        '--config',
        TINY_STUDENT,
        '--model_path',
        os.path.join(save_dir, 'best_model'),
        '--json',
        metrics_path,
        *data_opts(synthetic_root),
    )
    return save_dir, train, val, metrics_path


def test_train_writes_paddleseg_layout(tiny_run):
    save_dir, train, _, _ = tiny_run
    for iteration in (2, 4):
        for name in ('model.pdparams', 'model.pdopt'):
            assert os.path.isfile(os.path.join(save_dir, f'iter_{iteration}', name))
    assert os.path.isfile(os.path.join(save_dir, 'best_model', 'model.pdparams'))
    assert [n for n in os.listdir(save_dir) if n.startswith('vdlrecords.')], os.listdir(save_dir)
    with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
        records = [json.loads(line) for line in f]
    assert [r['iter'] for r in records if r['tag'] == 'Evaluate'] == [2, 4]
    assert any(r['tag'] == 'Train' and r['iter'] == 4 for r in records)
    # No temporary or backup folders of the atomic saves are left behind.
    assert not [n for n in os.listdir(save_dir) if n.endswith(('.tmp', '.old'))]


def test_train_log_line_has_paddleseg_fields(tiny_run):
    _, train, _, _ = tiny_run
    lines = [line for line in train.stdout.splitlines() if '[TRAIN]' in line]
    assert lines, train.stdout[-3000:]
    line = lines[-1]
    assert 'iter: 4/4' in line
    for pattern in (
        r'loss: \d+\.\d+',
        r'lr: \d+\.\d+',
        r'batch_cost: \d+\.\d+',
        r'reader_cost: \d+\.\d+',
        r'ips: \d+\.\d+ samples/sec',
        r'ETA \d\d:\d\d:\d\d',
    ):
        assert re.search(pattern, line), (pattern, line)


def test_logged_lr_is_the_lr_of_that_iteration(tiny_run):
    """As PaddleSeg's train loop: lr is read before the scheduler steps for the next iter.

    tiny configs: PolynomialDecay(0.01, end_lr 0, power 0.9), decay_steps = iters = 4, so
    iteration 4 trains with 0.01 * (1 - 3/4) ** 0.9 (the 4th value of the schedule).
    """
    save_dir, train, _, _ = tiny_run
    expected = 0.01 * (1 - 3 / 4) ** 0.9
    with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
        record = [r for r in map(json.loads, f) if r['tag'] == 'Train' and r['iter'] == 4][0]
    assert abs(record['lr'] - expected) < 1e-9, (record['lr'], expected)
    line = [line for line in train.stdout.splitlines() if 'iter: 4/4' in line][0]
    assert f'lr: {expected:.6f}' in line, line


def test_val_reports_and_writes_json(tiny_run):
    save_dir, _, val, metrics_path = tiny_run
    assert val.returncode == 0, val.stderr[-3000:]
    assert '[EVAL] #Images:' in val.stdout
    with open(metrics_path) as f:
        metrics = json.load(f)
    for key in ('miou', 'acc', 'kappa', 'dice', 'class_iou'):
        assert key in metrics
    assert len(metrics['class_iou']) == 2
    # val.py on best_model gives the best mIoU training saw.
    with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
        evals = [json.loads(line) for line in f if '"Evaluate"' in line]
    assert abs(metrics['miou'] - max(r['mIoU'] for r in evals)) < 1e-6


# --------------------------------------------------------------------------------------------
# A dataset this project did not generate: val.py's mIoU against one computed here.


@pytest.fixture(scope='module')
def foreign_run(tmp_path_factory):
    base = tmp_path_factory.mktemp('foreign')
    root = write_foreign_dataset(str(base / 'my_data'))
    config = write_foreign_config(str(base / 'my_config.yml'), root, iters=3)
    save_dir = str(base / 'out')
    train = run_cli(
        'train.py',
        '--config',
        config,
        '--save_interval',
        '1',
        '--do_eval',
        '--seed',
        '1',
        '--save_dir',
        save_dir,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    # best and last; iter_1 too, as an untrained model's (eval-mode) predictions there are
    # more likely to mix both classes than the nearly-all-background ones of later iters.
    weights = {
        'best': os.path.join(save_dir, 'best_model'),
        'last': os.path.join(save_dir, 'iter_3'),
        'first': os.path.join(save_dir, 'iter_1'),
    }
    vals = run_parallel(
        {
            name: (
                'val.py',
                '--config',
                config,
                '--model_path',
                path,
                '--json',
                str(base / f'{name}.json'),
            )
            for name, path in weights.items()
        },
        workers=3,
    )
    return root, save_dir, weights, vals, base


def independent_miou(weights_dir, root):
    """mIoU of the weights on root's val list, computed without paddleseg_ext."""
    import paddle
    import paddle.nn.functional as F
    from paddleseg.models import DeepLabV3P
    from paddleseg.models.backbones import ResNet18_vd

    model = DeepLabV3P(
        num_classes=2,
        backbone=ResNet18_vd(output_stride=16, in_channels=3),
        backbone_indices=[0, 3],
        aspp_ratios=[1, 6, 12, 18],
        aspp_out_channels=256,
        align_corners=False,
    )
    state = weights.load(os.path.join(weights_dir, 'model.pdparams'))
    assert sorted(state) == sorted(model.state_dict())
    model.set_state_dict(state)
    model.eval()
    cm = np.zeros((2, 2), dtype=np.int64)
    with paddle.no_grad():
        for image_path, label_path in list_pairs(root, 'val'):
            image = cv2.cvtColor(
                cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            ).astype('float32')
            label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
            assert label.ndim == 2
            image = cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR)
            image = (image / 255.0 - 0.5) / 0.5
            x = paddle.to_tensor(image.transpose(2, 0, 1)[np.newaxis].astype('float32'))
            logits = model(x)[0]
            logits = F.interpolate(logits, size=label.shape, mode='bilinear', align_corners=False)
            pred = paddle.argmax(logits, axis=1).numpy()[0]
            kept = label != 255
            cm += np.bincount(label[kept].astype(np.int64) * 2 + pred[kept], minlength=4).reshape(
                2, 2
            )
    intersect = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    class_iou = np.where(union > 0, intersect / np.maximum(union, 1), 0.0)
    return float(class_iou.mean()), class_iou, cm


@pytest.mark.parametrize('which', ['best', 'last', 'first'])
def test_val_miou_matches_independent_computation(foreign_run, which):
    root, _, weights, vals, base = foreign_run
    val = vals[which]
    assert val.returncode == 0, val.stderr[-3000:]
    assert '[EVAL] #Images: 4' in val.stdout
    with open(base / f'{which}.json') as f:
        metrics = json.load(f)
    miou, class_iou, cm = independent_miou(weights[which], root)
    assert metrics['num_images'] == 4
    assert abs(metrics['miou'] - miou) <= 0.01, (metrics, miou, cm)
    assert np.allclose(metrics['class_iou'], class_iou, atol=0.01), (metrics, class_iou, cm)
    # Ignored pixels are left out: the matrix counts the labelled pixels only.
    labelled = sum(
        int((cv2.imread(lbl, cv2.IMREAD_UNCHANGED) != 255).sum())
        for _, lbl in list_pairs(root, 'val')
    )
    assert cm.sum() == labelled


def test_foreign_dataset_train_eval_matches_val(foreign_run):
    """The evaluation during training and val.py agree on the same weights."""
    _, save_dir, _, vals, base = foreign_run
    with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
        evals = {r['iter']: r for r in map(json.loads, f) if r['tag'] == 'Evaluate'}
    assert sorted(evals) == [1, 2, 3]
    with open(base / 'last.json') as f:
        last = json.load(f)
    with open(base / 'best.json') as f:
        best = json.load(f)
    assert abs(last['miou'] - evals[3]['mIoU']) < 1e-6
    assert abs(best['miou'] - max(r['mIoU'] for r in evals.values())) < 1e-6


# --------------------------------------------------------------------------------------------
# Bad input: one `error:` line, exit code 1, nothing written.


def test_missing_dataset_root_names_folder_and_prepare_command(tmp_path):
    missing = str(tmp_path / 'no_such_data')
    save_dir = str(tmp_path / 'out')
    result = run_cli(
        'train.py', '--config', TINY_STUDENT, '--save_dir', save_dir, *data_opts(missing)
    )
    line = error_line(result)
    assert missing in line
    assert 'tools/prepare_data.py' in line
    assert snapshot(save_dir) in (None, set())


def _bad_input_cases(base, synthetic_root):
    """{name: (argv, save_dir, expected substrings)}; files are written here."""
    cases = {}

    def case_dir(name):
        path = os.path.join(base, name)
        os.makedirs(path)
        return path

    def student_run(name, *extra, save_dir=None, config=TINY_STUDENT, opts=()):
        save_dir = save_dir or os.path.join(base, name, 'out')
        argv = (
            'train.py',
            '--config',
            config,
            '--iters',
            '2',
            '--save_dir',
            save_dir,
            *extra,
            '--opts',
            f'train_dataset.dataset_root={synthetic_root}',
            f'val_dataset.dataset_root={synthetic_root}',
            *opts,
        )
        return argv, save_dir

    def yaml_over_student(name, text):
        path = os.path.join(case_dir(name), 'config.yml')
        with open(path, 'w') as f:
            f.write(f"_base_: '{TINY_STUDENT}'\n{text}")
        return path

    # Config mistakes.
    config = yaml_over_student('top_key', 'bach_size: 2\n')
    argv, save_dir = student_run('top_key', config=config)
    cases['top_key'] = (argv, save_dir, [config, "'bach_size'", "did you mean 'batch_size'"])

    argv, save_dir = student_run('model_type', opts=('model.type=DeepLabV3Plus',))
    case_dir('model_type')
    cases['model_type'] = (argv, save_dir, ["'DeepLabV3Plus'", "did you mean 'DeepLabV3P'"])

    config = yaml_over_student(
        'loss_type', 'loss:\n  types:\n    - type: CrossEntropyLos\n  coef: [1]\n'
    )
    argv, save_dir = student_run('loss_type', config=config)
    cases['loss_type'] = (
        argv,
        save_dir,
        [
            "'CrossEntropyLos'",
            'registered losses',
            'CrossEntropyLoss',
            'DiceLoss',
            'LovaszSoftmaxLoss',
        ],
    )

    # Data mistakes, on the generic Dataset.
    def foreign_case(name):
        folder = case_dir(name)
        root = write_foreign_dataset(os.path.join(folder, 'data'))
        config = write_foreign_config(os.path.join(folder, 'config.yml'), root, iters=2)
        save_dir = os.path.join(folder, 'out')
        return root, ('train.py', '--config', config, '--save_dir', save_dir), save_dir

    root, argv, save_dir = foreign_case('three_columns')
    list_path = os.path.join(root, 'train.txt')
    with open(list_path) as f:
        lines = f.readlines()
    lines[2] = lines[2].rstrip('\n') + ' extra_column.png\n'
    with open(list_path, 'w') as f:
        f.writelines(lines)
    cases['three_columns'] = (argv, save_dir, [f'{list_path}:3'])

    root, argv, save_dir = foreign_case('label_value')
    label_path = list_pairs(root, 'train')[1][1]
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    label[0, 0] = 7
    cv2.imwrite(label_path, label)
    cases['label_value'] = (argv, save_dir, [label_path, 'value 7'])
    # The same with a DataLoader worker process: the error must still come out as one line.
    cases['label_value_workers'] = (
        argv + ('--num_workers', '1', '--save_dir', save_dir + '_workers'),
        save_dir + '_workers',
        [label_path, 'value 7'],
    )

    root, argv, save_dir = foreign_case('size_mismatch')
    label_path = list_pairs(root, 'train')[2][1]
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    cv2.imwrite(label_path, label[:-5, :-3])
    cases['size_mismatch'] = (argv, save_dir, [label_path])

    root, argv, save_dir = foreign_case('empty_image')
    image_path = list_pairs(root, 'train')[3][0]
    open(image_path, 'w').close()
    cases['empty_image'] = (argv, save_dir, [image_path])

    # Output and resume mistakes.
    folder = case_dir('unwritable')
    regular_file = os.path.join(folder, 'a_file')
    with open(regular_file, 'w') as f:
        f.write('not a folder\n')
    argv, save_dir = student_run('unwritable', save_dir=os.path.join(regular_file, 'out'))
    cases['unwritable'] = (argv, save_dir, [save_dir])

    folder = case_dir('not_a_checkpoint')
    not_checkpoint = os.path.join(folder, 'some_weights')
    os.makedirs(not_checkpoint)
    with open(os.path.join(not_checkpoint, 'model.pdparams'), 'wb') as f:
        f.write(b'not really weights')
    save_dir = os.path.join(folder, 'out')
    os.makedirs(save_dir)
    with open(os.path.join(save_dir, 'notes.txt'), 'w') as f:
        f.write('existing content\n')
    argv, save_dir = student_run(
        'not_a_checkpoint', '--resume_model', not_checkpoint, save_dir=save_dir
    )
    cases['not_a_checkpoint'] = (argv, save_dir, [not_checkpoint])
    return cases


# A run that fails on bad input is done in seconds; past this it hangs. The margin is for
# all cases starting paddle at once on a busy 2-core machine.
BAD_INPUT_TIMEOUT = 120


@pytest.fixture(scope='module')
def bad_input_runs(synthetic_root, tmp_path_factory):
    base = str(tmp_path_factory.mktemp('bad_inputs'))
    cases = _bad_input_cases(base, synthetic_root)
    before = {name: snapshot(save_dir) for name, (_, save_dir, _) in cases.items()}
    results = run_parallel(
        {name: argv for name, (argv, _, _) in cases.items()},
        workers=len(cases),
        timeout=BAD_INPUT_TIMEOUT,
    )
    return {
        name: (results[name], save_dir, expected, before[name])
        for name, (_, save_dir, expected) in cases.items()
    }


BAD_INPUT_CASES = [
    'top_key',
    'model_type',
    'loss_type',
    'three_columns',
    'label_value',
    'label_value_workers',
    'size_mismatch',
    'empty_image',
    'unwritable',
    'not_a_checkpoint',
]


@pytest.mark.parametrize('case', BAD_INPUT_CASES)
def test_bad_input_is_one_error_line_and_writes_nothing(bad_input_runs, case):
    result, save_dir, expected, before = bad_input_runs[case]
    line = error_line(result)
    for text in expected:
        assert text in line, (text, line)
    after = snapshot(save_dir)
    if before is None:
        # A save_dir that did not exist may at most have been created, empty.
        assert after in (None, set()), (case, after)
    else:
        assert after == before, (case, before, after)


def test_unwritable_save_dir_keeps_the_file(bad_input_runs):
    _, save_dir, _, _ = bad_input_runs['unwritable']
    with open(os.path.dirname(save_dir)) as f:
        assert f.read() == 'not a folder\n'


# --------------------------------------------------------------------------------------------


def test_keep_checkpoint_max(synthetic_root, tmp_path):
    save_dir = str(tmp_path / 'out')
    result = run_cli(
        'train.py',
        '--config',
        TINY_STUDENT,
        '--iters',
        '6',
        '--save_interval',
        '2',
        '--keep_checkpoint_max',
        '2',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    iter_dirs = sorted(n for n in os.listdir(save_dir) if n.startswith('iter_'))
    assert iter_dirs == ['iter_4', 'iter_6'], os.listdir(save_dir)
    for name in iter_dirs:
        assert os.path.isfile(os.path.join(save_dir, name, 'model.pdparams'))
        assert os.path.isfile(os.path.join(save_dir, name, 'model.pdopt'))


@pytest.mark.parametrize(
    'text,expected',
    [
        ('batch_size: -2\n', 'batch_size: -2 is not a positive integer'),
        ('iters: many\n', "iters: 'many' is not a positive integer"),
        ('iters: 0\n', 'iters: 0 is not a positive integer'),
        ('optimizer: {momentum: high}\n', "optimizer.momentum: 'high' is not a number"),
        (
            'lr_scheduler: {learning_rate: 1e-3}\n',
            "lr_scheduler.learning_rate: '1e-3' is not a number (YAML reads it as text: write "
            '1.0e-3)',
        ),
        (
            'lr_scheduler: {warmup_iters: 20}\n',
            'lr_scheduler: warmup_iters needs warmup_start_lr, the learning rate the warmup starts '
            'from (e.g. 1.0e-4)',
        ),
        (
            'lr_scheduler: {warmup_start_lr: 1.0e-4}\n',
            'lr_scheduler.warmup_iters: None is not a positive integer (a warmup needs warmup_iters '
            'and warmup_start_lr)',
        ),
        (
            'lr_scheduler: {warmup_iters: 0.5, warmup_start_lr: 1.0e-4}\n',
            'lr_scheduler.warmup_iters: 0.5 is not a positive integer (a warmup needs warmup_iters '
            'and warmup_start_lr)',
        ),
        (
            'loss: {types: [{type: CrossEntropyLoss}], coef: []}\n',
            'loss needs non-empty `types` and `coef` lists (one coef per type), got types '
            "[{'type': 'CrossEntropyLoss'}], coef []",
        ),
    ],
)
def test_config_values_paddle_would_fail_on_are_checked_first(tmp_path, text, expected):
    """Values paddleseg passes on unchecked, which failed deep inside paddle before."""
    from paddleseg_ext.config import load_config
    from paddleseg_ext.errors import UserInputError

    config = tmp_path / 'config.yml'
    config.write_text(f"_base_: '{TINY_STUDENT}'\n{text}")
    with pytest.raises(UserInputError) as raised:
        load_config(str(config))
    assert str(raised.value) == f'{config}: {expected}'


@pytest.mark.parametrize(
    'argv, fragments',
    [
        (
            ['distill_train.py', '--teacher_confg', 'T.yml', '--student_config', 'S.yml'],
            ['unknown flag --teacher_confg', "did you mean '--teacher_config'?"],
        ),
        (['train.py', '--config', 'S.yml', '--iter', '3', '--seeed', '1'], ['--seeed', '--seed']),
        (['val.py', '--config'], ['val.py: argument --config: expected one argument']),
    ],
)
def test_a_mistyped_flag_is_named_in_one_line(argv, fragments):
    """argparse alone would say the required --teacher_config is missing."""
    error_line(run_cli(*argv, timeout=60), *fragments)


def test_the_console_is_the_run_not_the_config(synthetic_root, tmp_path):
    """The resolved config goes to the run folder; paddleseg's per-component dumps and
    paddle's BatchNorm warning stay off the console; the ETA leaves out the first step."""
    save_dir = tmp_path / 'run'
    result = run_cli(
        'train.py',
        '--config',
        os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
        '--iters',
        '2',
        '--log_iters',
        '1',
        '--save_dir',
        str(save_dir),
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert 'Use the following config' not in console and 'Add the `' not in console
    assert 'UserWarning' not in console, console
    assert len(console.splitlines()) <= 6, console
    assert 'ETA --:--:-- (after the first step)' in console
    with open(save_dir / 'config.yml') as handle:
        assert yaml.safe_load(handle)['iters'] == 2
