"""Classification through the same CLIs and engine: train.py, distill_train.py and val.py on
a tiny subset of scikit-learn's digits; top-k against numpy; bad list lines as one line."""

import glob
import json
import os

import cv2
import numpy as np
import pytest
from conftest import TEST_CONFIGS, run_cli
from paddleseg.cvlibs import SegBuilder

from paddleseg_ext.components import build
from paddleseg_ext.config import load_config
from paddleseg_ext.datasets.classification import read_class_list
from paddleseg_ext.datasets.dataset import list_lines, read_file_list
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.evaluation.classification import topk_correct
from paddleseg_ext.pretrained import load_weights

TEACHER_CFG = os.path.join(TEST_CONFIGS, 'tiny_cls_teacher.yml')
STUDENT_CFG = os.path.join(TEST_CONFIGS, 'tiny_cls_student.yml')
TRAIN_IMAGES, VAL_IMAGES = 48, 24


def subset_opts(root, train_list='tiny_train.txt', val_list='tiny_val.txt'):
    return [
        '--opts',
        f'train_dataset.dataset_root={root}',
        f'val_dataset.dataset_root={root}',
        f'train_dataset.train_path={os.path.join(root, train_list)}',
        f'val_dataset.val_path={os.path.join(root, val_list)}',
    ]


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    """The digits written once by prepare_data.py, with list files of their first few train
    and val images."""
    root = str(tmp_path_factory.mktemp('digits'))
    result = run_cli('tools/prepare_data.py', '--digits', '--out', root, '--size', '16')
    assert result.returncode == 0, result.stderr[-3000:]
    for mode, count in (('train', TRAIN_IMAGES), ('val', VAL_IMAGES)):
        with open(os.path.join(root, f'{mode}_list.txt')) as f:
            lines = f.readlines()[:count]
        with open(os.path.join(root, f'tiny_{mode}.txt'), 'w') as f:
            f.writelines(lines)
    return root


@pytest.fixture(scope='module')
def teacher_dir(tmp_path_factory, digits_root):
    save_dir = str(tmp_path_factory.mktemp('cls_teacher'))
    result = run_cli(
        'train.py',
        '--config',
        TEACHER_CFG,
        '--iters',
        '4',
        '--save_interval',
        '2',
        '--do_eval',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        *subset_opts(digits_root),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return save_dir


def read_log(save_dir):
    with open(os.path.join(save_dir, 'train_log.jsonl')) as f:
        return [json.loads(line) for line in f]


def numpy_images(root, list_name):
    """A list's images, preprocessed here with cv2 and numpy (gray, resize to 16x16
    bilinear, (x / 255 - 0.5) / 0.5) as 1x1x16x16 arrays, and their labels."""
    images, labels = [], []
    with open(os.path.join(root, list_name)) as f:
        for line in f:
            path, label = line.split()
            image = cv2.imread(os.path.join(root, path), cv2.IMREAD_GRAYSCALE)
            image = cv2.resize(image, (16, 16), interpolation=cv2.INTER_LINEAR)
            images.append(((image.astype(np.float32) / 255.0 - 0.5) / 0.5)[np.newaxis, np.newaxis])
            labels.append(int(label))
    return images, np.array(labels)


def dygraph_predictions(config_path, weights, images):
    """The weights' top-1 class of each image, predicted one image at a time."""
    import paddle

    model = build(SegBuilder(load_config(config_path)), 'model')
    load_weights(model, weights)
    model.eval()
    with paddle.no_grad():
        return np.array([int(np.argmax(model(paddle.to_tensor(x))[0].numpy()[0])) for x in images])


def numpy_top1(config_path, weights, root, list_name):
    """Top-1 of the weights over a list, counted here (numpy_images' preprocessing)."""
    images, labels = numpy_images(root, list_name)
    return float(np.mean(dygraph_predictions(config_path, weights, images) == labels))


def test_train_logs_top1_top5_and_val_json_matches_a_numpy_count(
    teacher_dir, digits_root, tmp_path
):
    evals = [r for r in read_log(teacher_dir) if r['tag'] == 'Evaluate']
    assert [r['iter'] for r in evals] == [2, 4]
    assert all(set(r) == {'iter', 'tag', 'Top1', 'Top5'} for r in evals), evals
    out = tmp_path / 'metrics.json'
    best = os.path.join(teacher_dir, 'best_model', 'model.pdparams')
    result = run_cli(
        'val.py',
        '--config',
        TEACHER_CFG,
        '--model_path',
        best,
        '--json',
        str(out),
        *subset_opts(digits_root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'top1:' in result.stdout and 'top5:' in result.stdout, result.stdout[-2000:]
    metrics = json.loads(out.read_text())
    assert set(metrics) == {'top1', 'top5', 'num_images'}
    assert metrics['num_images'] == VAL_IMAGES
    assert metrics['top1'] == pytest.approx(
        numpy_top1(TEACHER_CFG, best, digits_root, 'tiny_val.txt'), abs=1e-9
    )
    assert metrics['top1'] == pytest.approx(max(r['Top1'] for r in evals), abs=1e-9)
    assert metrics['top1'] <= metrics['top5'] <= 1.0


def test_distill_train_kl_and_feature_terms_on_a_classifier(teacher_dir, digits_root, tmp_path):
    save_dir = str(tmp_path / 'distilled')
    result = run_cli(
        'distill_train.py',
        '--allow_weak_teacher',
        '--teather_config',
        TEACHER_CFG,
        '--student_config',
        STUDENT_CFG,
        '--teacher_model_path',
        os.path.join(teacher_dir, 'best_model', 'model.pdparams'),
        '--iters',
        '2',
        '--save_interval',
        '2',
        '--do_eval',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        '--teacher_cache',
        str(tmp_path / 'cache'),
        *subset_opts(digits_root),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = read_log(save_dir)
    assert 'teacher_cache' in log[0], log[0]  # the run header: the teacher ran behind the cache
    cached = [name for _, _, names in os.walk(tmp_path / 'cache') for name in names]
    assert 'logits.npy' in cached and 'feature_0.npy' in cached, cached
    train = [r for r in log if r['tag'] == 'Train']
    assert set(train[-1]) >= {'CELoss', 'KLDivergenceLoss(logits)', 'L2Loss(net.conv6)'}, train[-1]
    assert train[-1]['KLDivergenceLoss(logits)'] > 0 and train[-1]['L2Loss(net.conv6)'] > 0
    assert 'Teacher compiled for Paddle Inference' in result.stdout + result.stderr
    # best_model is the plain student: it loads into the student config's model.
    student = build(
        SegBuilder(load_config(STUDENT_CFG, opts=subset_opts(digits_root)[1:])), 'model'
    )
    load_weights(student, os.path.join(save_dir, 'best_model', 'model.pdparams'))


@pytest.fixture(scope='module')
def student_weights(tmp_path_factory, digits_root):
    save_dir = str(tmp_path_factory.mktemp('cls_student'))
    result = run_cli(
        'train.py',
        '--config',
        STUDENT_CFG,
        '--iters',
        '2',
        '--save_interval',
        '2',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        *subset_opts(digits_root),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return os.path.join(save_dir, 'iter_2', 'model.pdparams')


@pytest.fixture(scope='module', params=['ResNet50', 'MobileNetV1'])
def exported(request, teacher_dir, tmp_path_factory):
    """(config, weights, folder) of tools/export.py on a gray classifier, without
    --input_shape: the teacher, and the student (whose depthwise convolutions run as an
    unfold in dygraph)."""
    if request.param == 'ResNet50':
        config, weights = TEACHER_CFG, os.path.join(teacher_dir, 'best_model', 'model.pdparams')
    else:
        config, weights = STUDENT_CFG, request.getfixturevalue('student_weights')
    out = str(tmp_path_factory.mktemp('cls_inference'))
    result = run_cli(
        'tools/export.py', '--config', config, '--model_path', weights, '--save_dir', out
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return config, weights, out


def test_export_reads_the_channels_from_the_config_and_predicts_as_the_model(digits_root, exported):
    """deploy.yaml says one channel, and Paddle Inference gives each image the dygraph
    model's class, in one batch."""
    import yaml

    from paddleseg_ext.deploy.inference import InferenceModel

    config, weights, out = exported
    with open(os.path.join(out, 'deploy.yaml')) as f:
        assert yaml.safe_load(f)['Deploy']['input_shape'] == [-1, 1, -1, -1]
    images, _ = numpy_images(digits_root, 'tiny_val.txt')
    ids = InferenceModel(out).run(np.concatenate(images))
    np.testing.assert_array_equal(ids, dygraph_predictions(config, weights, images))


@pytest.mark.parametrize('source', ['--model_path', '--inference_dir'])
def test_predict_writes_a_class_per_image(digits_root, exported, tmp_path, source):
    """tools/predict.py on a classifier's list file, from weights or from the export:
    predictions.txt names each image with the dygraph model's class."""
    config, weights, inference_dir = exported
    out = str(tmp_path / 'predict')
    result = run_cli(
        'tools/predict.py',
        '--config',
        config,
        source,
        weights if source == '--model_path' else inference_dir,
        '--image_path',
        os.path.join(digits_root, 'tiny_val.txt'),
        '--save_dir',
        out,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(out, 'predictions.txt')) as f:
        lines = [line.split() for line in f]
    with open(os.path.join(digits_root, 'tiny_val.txt')) as f:
        expected_paths = [os.path.join(digits_root, line.split()[0]) for line in f]
    assert [path for path, _ in lines] == expected_paths
    images, _ = numpy_images(digits_root, 'tiny_val.txt')
    np.testing.assert_array_equal(
        [int(class_id) for _, class_id in lines], dygraph_predictions(config, weights, images)
    )


def test_benchmark_quality_on_classification_data_elsewhere(digits_root, tmp_path):
    """--data points every run at another root, list files included; each distilled run
    keeps its teacher cache in its own folder."""
    root = tmp_path / 'digits'
    root.mkdir()
    (root / 'images').symlink_to(os.path.join(digits_root, 'images'))
    for mode in ('train', 'val'):
        with open(os.path.join(digits_root, f'tiny_{mode}.txt')) as f:
            (root / f'{mode}_list.txt').write_text(f.read())
    out = tmp_path / 'benchmark'
    result = run_cli(
        'tools/benchmark_quality.py',
        '--task',
        'classification',
        '--teacher_config',
        TEACHER_CFG,
        '--student_config',
        STUDENT_CFG,
        '--data',
        str(root),
        '--teacher_data',
        str(root),
        '--teacher_iters',
        '2',
        '--student_iters',
        '2',
        '--seeds',
        '0',
        '--allow_weak_teacher',
        '--out',
        str(out),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out / 'report.json') as f:
        assert 0 <= json.load(f)['distilled'] <= 1
    [student], [distilled] = (
        glob.glob(str(out / f'{kind}*_seed0_*')) for kind in ('student', 'distilled')
    )
    for run_dir in (student, distilled, str(out / 'teacher')):
        evaluations = [r for r in read_log(run_dir) if r['tag'] == 'Evaluate']
        assert evaluations and all(0 <= r['Top1'] <= 1 for r in evaluations)
        assert f'#Images: {VAL_IMAGES} ' in open(os.path.join(run_dir, 'run.log')).read()
    assert os.listdir(os.path.join(distilled, 'teacher_cache'))
    assert not os.path.exists(os.path.join(student, 'teacher_cache'))


def test_prepare_data_writes_all_digits_split_stratified(digits_root):
    from sklearn.datasets import load_digits

    target = load_digits().target
    labels = {}
    for mode in ('train', 'val'):
        with open(os.path.join(digits_root, f'{mode}_list.txt')) as f:
            pairs = [line.split() for line in f]
        labels[mode] = np.array([int(label) for _, label in pairs])
        for path, label in pairs:  # the file name is the digit's index in load_digits
            assert int(os.path.basename(path)[:-4]) in range(len(target))
            assert target[int(os.path.basename(path)[:-4])] == int(label)
        image = cv2.imread(os.path.join(digits_root, pairs[0][0]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (16, 16) and image.dtype == np.uint8
    assert len(labels['train']) + len(labels['val']) == len(target) == 1797
    assert len(labels['val']) == 899  # halves, as scikit-learn's digits example
    val_share = np.bincount(labels['val'], minlength=10) / np.bincount(target, minlength=10)
    assert np.all(np.abs(val_share - 0.5) < 0.02), val_share  # stratified


def test_topk_correct_matches_a_loop():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10))
    labels = rng.integers(0, 10, 50)
    for k in (1, 3, 5):
        expected = sum(int(label in np.argsort(-row)[:k]) for row, label in zip(logits, labels))
        assert topk_correct(logits, labels, k) == expected
    assert topk_correct(logits, labels, 1) == int((logits.argmax(1) == labels).sum())
    assert topk_correct(logits[:, :3], labels % 3, 5) == 50  # k capped at the classes


@pytest.mark.parametrize(
    'read, hint',
    [
        (lambda path: read_class_list(path, '.', 10, 'train'), 'tools/prepare_data.py --digits'),
        (lambda path: read_file_list(path, '.', 'train'), 'tools/prepare_data.py'),
    ],
    ids=['classification', 'segmentation'],
)
def test_a_missing_list_file_is_named_with_how_to_make_it(tmp_path, read, hint):
    missing = str(tmp_path / 'nowhere.txt')
    with pytest.raises(UserInputError) as error:
        read(missing)
    message = str(error.value)
    assert f"train list file '{missing}' does not exist" in message
    assert message.endswith(hint)


def test_list_lines_skips_blank_lines_and_counts_them(tmp_path):
    path = tmp_path / 'list.txt'
    path.write_text('a.png 1\n\n  \nb.png 2\n')
    assert list(list_lines(str(path), 'train', 'x')) == [
        (1, 'a.png 1', ['a.png', '1']),
        (4, 'b.png 2', ['b.png', '2']),
    ]


@pytest.mark.parametrize(
    'line, fragments',
    [
        ('images/train/0000.png\n', ['tiny_bad.txt:2', "expected 'image_path label'"]),
        ('images/train/0000.png 10\n', ['tiny_bad.txt:2', 'label 10 is outside [0, 10)']),
        ('images/train/0000.png x\n', ['tiny_bad.txt:2', "label 'x' is not an integer"]),
    ],
)
def test_bad_list_line_is_one_clear_line(digits_root, tmp_path, line, fragments):
    with open(os.path.join(digits_root, 'tiny_train.txt')) as f:
        first = f.readline()
    with open(os.path.join(digits_root, 'tiny_bad.txt'), 'w') as f:
        f.writelines([first, line])
    save_dir = str(tmp_path / 'run')
    result = run_cli(
        'train.py',
        '--config',
        TEACHER_CFG,
        '--save_dir',
        save_dir,
        *subset_opts(digits_root, train_list='tiny_bad.txt'),
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not os.path.exists(save_dir)


@pytest.mark.parametrize('loss', ['ChannelWiseDistillLoss', 'PairwiseAffinityLoss'])
def test_spatial_loss_on_logits_is_refused_when_the_config_is_read(
    teacher_dir, digits_root, tmp_path, loss
):
    config = tmp_path / 'spatial_logits.yml'
    config.write_text(
        f"_base_: '{os.path.join(TEST_CONFIGS, 'tiny_cls_base.yml')}'\n"
        'model: {type: MobileNetV1, num_classes: 10, in_channels: 1, '
        'scale: 0.25}\n'
        f'distill_loss: {{types: [{{type: {loss}}}], coef: [1]}}\n'
    )
    result = run_cli(
        'distill_train.py',
        '--allow_weak_teacher',
        '--teather_config',
        TEACHER_CFG,
        '--student_config',
        str(config),
        '--teacher_model_path',
        os.path.join(teacher_dir, 'best_model'),
        '--save_dir',
        str(tmp_path / 'run'),
        *subset_opts(digits_root),
    )
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert f'{loss} compares spatial maps' in lines[0]
    assert '[1, 10]' in lines[0] and 'KLDivergenceLoss' in lines[0]


def test_kl_and_l2_on_classification_logits_match_numpy():
    import paddle

    from slim.distill.losses import KLDivergenceLoss, L2Loss

    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(6, 10)), rng.normal(size=(6, 10)) * 3
    label = np.array([0, 255, 3, 4, 255, 9])

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    t_log, s_log = log_softmax(teacher / 4), log_softmax(student / 2)
    per_sample = (np.exp(t_log) * (t_log - s_log)).sum(axis=1)
    kl = KLDivergenceLoss(student_temperature=2, teacher_temperature=4)(
        paddle.to_tensor(student, 'float32'),
        paddle.to_tensor(teacher, 'float32'),
        paddle.to_tensor(label),
    )
    assert float(kl) == pytest.approx(per_sample[label != 255].mean() * 8, rel=1e-5)
    l2 = L2Loss()(paddle.to_tensor(student, 'float32'), paddle.to_tensor(teacher, 'float32'))
    assert float(l2) == pytest.approx(((student - teacher) ** 2).mean(), rel=1e-5)


@pytest.mark.parametrize('stride', [1, 2])
def test_mobilenetv1_depthwise_convolution_matches_numpy_and_keeps_its_parameters(stride):
    import paddle

    from paddleseg_ext.models.classifiers import MobileNetV1

    model = MobileNetV1(num_classes=10, in_channels=1, scale=0.25)
    depthwise = [
        layer
        for layer in model.sublayers()
        if isinstance(layer, paddle.nn.Conv2D) and layer._groups > 1
    ]
    assert len(depthwise) == 13 and all(type(layer) is not paddle.nn.Conv2D for layer in depthwise)
    layer = next(layer for layer in depthwise if layer._stride == [stride, stride])
    rng = np.random.default_rng(0)
    channels = layer._in_channels
    x = rng.normal(size=(2, channels, 5, 6)).astype('float32')
    weight = layer.weight.numpy()
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out_h, out_w = (5 - 1) // stride + 1, (6 - 1) // stride + 1
    expected = np.zeros((2, channels, out_h, out_w), 'float32')
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, i * stride : i * stride + 3, j * stride : j * stride + 3]
            expected[:, :, i, j] = (window * weight[None, :, 0]).sum(axis=(2, 3))
    x_tensor = paddle.to_tensor(x, stop_gradient=False)
    out = layer(x_tensor)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
    # gradients as paddle's grouped convolution's, with the layer's own parameter
    out.sum().backward()
    reference_x = paddle.to_tensor(x, stop_gradient=False)
    reference_w = paddle.to_tensor(weight, stop_gradient=False)
    paddle.nn.functional.conv2d(
        reference_x, reference_w, stride=stride, padding=1, groups=channels
    ).sum().backward()
    np.testing.assert_allclose(
        x_tensor.grad.numpy(), reference_x.grad.numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        layer.weight.grad.numpy(), reference_w.grad.numpy(), rtol=1e-4, atol=1e-4
    )
    assert 'net.conv2_1._depthwise_conv.0.weight' in model.state_dict()
