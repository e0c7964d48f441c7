"""Deployment: export (Paddle Inference), predict, val.py's test-time options, run plots and
int8 quantization (where PaddleSlim is installed), on the tiny 64x64 student."""

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import paddle
import pytest
import yaml
from conftest import REPO_ROOT, TEST_CONFIGS, data_opts, run_cli
from PIL import Image
from test_evaluate import ChannelMeanModel, dataset  # noqa: F401  (dataset is a fixture)

from paddleseg_ext.compat import PADDLE_3, repair_onednn_config
from paddleseg_ext.config import load_config
from paddleseg_ext.deploy.export import MODEL_FILENAME, export_model
from paddleseg_ext.deploy.inference import InferenceModel, evaluate_inference
from paddleseg_ext.deploy.predict import list_images, predict
from paddleseg_ext.errors import UserInputError
from paddleseg_ext.evaluation import evaluate
from paddleseg_ext.evaluation.inference import InferenceOptions, infer_scores
from paddleseg_ext.pretrained import load_weights
from slim.distill.build import build_model_without_weights

TINY_STUDENT = os.path.join(TEST_CONFIGS, 'tiny_student.yml')


def tiny_config(root):
    return load_config(TINY_STUDENT, opts=data_opts(root)[1:], required=('model', 'val_dataset'))


def dygraph_model(root, weights):
    model, _ = build_model_without_weights(tiny_config(root))
    load_weights(model, weights)
    model.eval()
    return model


@pytest.fixture(scope='module')
def trained(synthetic_root, tmp_path_factory):
    """best weights of a 2-iteration tiny run."""
    save_dir = str(tmp_path_factory.mktemp('deploy_run') / 'out')
    result = run_cli(
        'train.py',
        '--config',
        TINY_STUDENT,
        '--iters',
        '2',
        '--save_interval',
        '2',
        '--do_eval',
        '--seed',
        '0',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return os.path.join(save_dir, 'best_model', 'model.pdparams')


@pytest.fixture(scope='module')
def exported(trained, synthetic_root, tmp_path_factory):
    """tools/export.py --output_op none, as a user runs it."""
    save_dir = str(tmp_path_factory.mktemp('exported') / 'infer')
    result = run_cli(
        'tools/export.py',
        '--config',
        TINY_STUDENT,
        '--model_path',
        trained,
        '--save_dir',
        save_dir,
        '--output_op',
        'none',
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return save_dir


# --------------------------------------------------------------------------------------------
# Export


def run_predictor(model_dir, image):
    config = paddle.inference.Config(
        os.path.join(model_dir, MODEL_FILENAME), os.path.join(model_dir, 'model.pdiparams')
    )
    repair_onednn_config(config)  # what a plain Paddle Inference 3.3 user needs too (README)
    predictor = paddle.inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(image.shape))
    handle.copy_from_cpu(image)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def test_export_matches_dygraph_logits(exported, trained, synthetic_root):
    # model.json on paddle 3, model.pdmodel on paddle 2
    assert {MODEL_FILENAME, 'model.pdiparams', 'deploy.yaml'} <= set(os.listdir(exported))
    image = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype('float32')
    expected = dygraph_model(synthetic_root, trained)(paddle.to_tensor(image))[0].numpy()
    got = run_predictor(exported, image)
    assert got.shape == expected.shape == (1, 2, 64, 64)
    assert np.abs(got - expected).max() <= 1e-4

    with open(os.path.join(exported, 'deploy.yaml')) as f:
        deploy = yaml.safe_load(f)['Deploy']
    assert deploy['model'] == MODEL_FILENAME and deploy['params'] == 'model.pdiparams'
    assert deploy['transforms'] == [
        {'type': 'Resize', 'target_size': [64, 64]},
        {'type': 'Normalize'},
    ]
    assert deploy['input_shape'] == [-1, 3, -1, -1]
    assert deploy['output_op'] == 'none' and deploy['output_dtype'] == 'float32'


def test_export_argmax_with_fixed_shape(trained, synthetic_root, tmp_path):
    info = export_model(
        TINY_STUDENT,
        trained,
        str(tmp_path),
        input_shape=[1, 3, 64, 64],
        opts=data_opts(synthetic_root)[1:],
    )
    assert info['Deploy']['output_op'] == 'argmax' and info['Deploy']['output_dtype'] == 'int32'
    assert info['Deploy']['input_shape'] == [1, 3, 64, 64]
    image = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype('float32')
    logits = dygraph_model(synthetic_root, trained)(paddle.to_tensor(image))[0].numpy()
    ids = run_predictor(str(tmp_path), image)
    assert ids.dtype == np.int32 and ids.shape == (1, 64, 64)
    assert (ids == logits.argmax(axis=1)).mean() > 0.999


def test_export_errors_are_one_line(trained, tmp_path):
    with pytest.raises(UserInputError, match='do not exist'):
        export_model(TINY_STUDENT, str(tmp_path / 'missing.pdparams'), str(tmp_path))
    with pytest.raises(UserInputError, match='input_shape'):
        export_model(TINY_STUDENT, trained, str(tmp_path), input_shape=[3, 64, 64])
    with pytest.raises(
        UserInputError,
        match=r'C is 1, but the config.s val images have 3 '
        r'\(val_dataset.img_channels\): use 3',
    ):
        export_model(TINY_STUDENT, trained, str(tmp_path), input_shape=[1, 1, 64, 64])
    with pytest.raises(UserInputError, match='output_op'):
        export_model(TINY_STUDENT, trained, str(tmp_path), output_op='sigmoid')


# --------------------------------------------------------------------------------------------
# Predict


@pytest.fixture(scope='module')
def image_folder(synthetic_root, tmp_path_factory):
    """Two images of different sizes (neither 64x64)."""
    folder = tmp_path_factory.mktemp('images')
    sources = sorted(os.listdir(os.path.join(synthetic_root, 'JPEGImages')))
    sizes = set()
    for name in sources:
        image = cv2.imread(os.path.join(synthetic_root, 'JPEGImages', name))
        if image.shape[:2] not in sizes:
            sizes.add(image.shape[:2])
            shutil.copy(os.path.join(synthetic_root, 'JPEGImages', name), folder / name)
        if len(sizes) == 2:
            break
    assert len(os.listdir(folder)) == 2
    return str(folder)


def check_predictions(save_dir, image_folder):
    masks = {}
    for name in sorted(os.listdir(image_folder)):
        stem = os.path.splitext(name)[0]
        mask_path = os.path.join(save_dir, 'pseudo_color_prediction', stem + '.png')
        added_path = os.path.join(save_dir, 'added_prediction', stem + '.jpg')
        image = cv2.imread(os.path.join(image_folder, name))
        mask = Image.open(mask_path)
        assert mask.mode == 'P'
        assert mask.size == (image.shape[1], image.shape[0])
        assert set(np.unique(np.asarray(mask))) <= {0, 1}
        added = cv2.imread(added_path)
        assert added is not None and added.shape == image.shape
        masks[stem] = np.asarray(mask)
    return masks


def test_predict_with_weights_and_with_inference_dir(
    trained, exported, image_folder, synthetic_root, tmp_path
):
    from_weights = run_cli(
        'tools/predict.py',
        '--config',
        TINY_STUDENT,
        '--model_path',
        trained,
        '--image_path',
        image_folder,
        '--save_dir',
        str(tmp_path / 'w'),
        *data_opts(synthetic_root),
    )
    assert from_weights.returncode == 0, from_weights.stderr[-3000:]
    from_export = run_cli(
        'tools/predict.py',
        '--config',
        TINY_STUDENT,
        '--inference_dir',
        exported,
        '--image_path',
        image_folder,
        '--save_dir',
        str(tmp_path / 'i'),
        *data_opts(synthetic_root),
    )
    assert from_export.returncode == 0, from_export.stderr[-3000:]
    masks_w = check_predictions(str(tmp_path / 'w'), image_folder)
    masks_i = check_predictions(str(tmp_path / 'i'), image_folder)
    for stem in masks_w:  # same logits (up to 1e-4), same mapping back: same masks
        assert (masks_w[stem] != masks_i[stem]).mean() < 0.001


def test_predict_list_file_names_and_errors(exported, image_folder, synthetic_root, tmp_path):
    names = sorted(os.listdir(image_folder))
    list_dir = tmp_path / 'lists'
    os.makedirs(list_dir / 'sub')
    shutil.copy(os.path.join(image_folder, names[0]), list_dir / 'sub' / names[0])
    list_file = list_dir / 'test.txt'
    list_file.write_text(
        f'sub/{names[0]} ignored_label.png\n\n{os.path.join(image_folder, names[1])}\n'
    )
    stems = [os.path.splitext(n)[0] for n in names]
    assert [name for _, name in list_images(str(list_file))] == [f'sub/{stems[0]}', stems[1]]

    written = predict(
        TINY_STUDENT,
        str(list_file),
        str(tmp_path / 'out'),
        inference_dir=exported,
        opts=data_opts(synthetic_root)[1:],
    )
    assert [os.path.relpath(mask, tmp_path / 'out') for mask, _ in written] == [
        f'pseudo_color_prediction/sub/{stems[0]}.png',
        f'pseudo_color_prediction/{stems[1]}.png',
    ]

    list_file.write_text('missing.jpg\n')
    with pytest.raises(UserInputError, match=r'test.txt:1: image .* does not exist'):
        list_images(str(list_file))
    with pytest.raises(UserInputError, match='does not exist'):
        list_images(str(tmp_path / 'nothing_here'))
    with pytest.raises(UserInputError, match='exactly one'):
        predict(TINY_STUDENT, image_folder, str(tmp_path / 'x'))


def test_inference_model_evaluates_like_dygraph(trained, exported, synthetic_root):
    from paddleseg.cvlibs import SegBuilder

    from paddleseg_ext.components import build

    val_dataset = build(SegBuilder(tiny_config(synthetic_root)), 'val_dataset')
    dygraph = evaluate(dygraph_model(synthetic_root, trained), val_dataset, print_detail=False)
    exported_metrics = evaluate_inference(InferenceModel(exported), val_dataset, print_detail=False)
    assert exported_metrics['miou'] == pytest.approx(dygraph['miou'], abs=1e-3)


# --------------------------------------------------------------------------------------------
# val.py: --aug_eval and --is_slide


def test_flip_aug_equals_plain_for_flip_equivariant_model(dataset):  # noqa: F811
    plain = evaluate(ChannelMeanModel(), dataset, print_detail=False)
    for flips in ({}, {'flip_horizontal': True}, {'flip_horizontal': True, 'flip_vertical': True}):
        flipped = evaluate(
            ChannelMeanModel(),
            dataset,
            print_detail=False,
            inference=InferenceOptions(aug_eval=True, **flips),
        )
        assert flipped['miou'] == pytest.approx(plain['miou'], abs=1e-9), flips
        assert flipped['class_iou'] == pytest.approx(plain['class_iou'], abs=1e-9), flips


def test_slide_equals_plain_for_full_and_overlapping_windows(dataset):  # noqa: F811
    plain = evaluate(ChannelMeanModel(), dataset, print_detail=False)
    # The transforms resize to 32x32: one full-size window; then 16x16 windows every 8 px,
    # which a per-pixel model predicts the same wherever they overlap.
    for crop, stride in (((32, 32), (32, 32)), ((16, 16), (8, 8))):
        slid = evaluate(
            ChannelMeanModel(),
            dataset,
            print_detail=False,
            inference=InferenceOptions(is_slide=True, crop_size=crop, stride=stride),
        )
        assert slid['miou'] == pytest.approx(plain['miou'], abs=1e-9), crop


def test_multi_scale_runs(dataset):  # noqa: F811
    result = evaluate(
        ChannelMeanModel(),
        dataset,
        print_detail=False,
        inference=InferenceOptions(aug_eval=True, scales=[0.75, 1.0, 1.25], flip_horizontal=True),
    )
    plain = evaluate(ChannelMeanModel(), dataset, print_detail=False)
    assert 0.5 < result['miou'] <= 1.0
    assert abs(result['miou'] - plain['miou']) < 0.05


class RampModel(paddle.nn.Layer):
    """Not flip-equivariant: class 1 scores the column index."""

    def forward(self, x):
        ramp = paddle.arange(x.shape[-1], dtype='float32').reshape([1, 1, 1, -1]) / 10
        ramp = paddle.expand(ramp, [x.shape[0], 1, x.shape[2], x.shape[3]])
        return [paddle.concat([paddle.zeros_like(ramp), ramp + x[:, :1]], axis=1)]


def test_aug_averages_softmax_of_flipped_back_predictions():
    image = paddle.to_tensor(
        np.random.default_rng(0).standard_normal((1, 3, 6, 8)), dtype='float32'
    )
    model = RampModel()
    scores = infer_scores(model, image, InferenceOptions(aug_eval=True, flip_horizontal=True))
    softmax = paddle.nn.functional.softmax
    plain = softmax(model(image)[0], axis=1).numpy()
    flipped_back = softmax(model(paddle.flip(image, [3]))[0], axis=1).numpy()[..., ::-1]
    np.testing.assert_allclose(np.exp(scores.numpy()), (plain + flipped_back) / 2, atol=1e-6)


def test_inference_option_mistakes_are_one_line():
    with pytest.raises(UserInputError, match='--aug_eval'):
        InferenceOptions(flip_horizontal=True)
    with pytest.raises(UserInputError, match='--crop_size'):
        InferenceOptions(is_slide=True, stride=(8, 8))
    with pytest.raises(UserInputError, match='larger than'):
        InferenceOptions(is_slide=True, crop_size=(16, 16), stride=(32, 8))
    with pytest.raises(UserInputError, match='--scales'):
        InferenceOptions(aug_eval=True, scales=[0.0])


def test_val_cli_aug_eval(trained, synthetic_root, tmp_path):
    metrics_path = str(tmp_path / 'metrics.json')
    result = run_cli(
        'val.py',
        '--config',
        TINY_STUDENT,
        '--model_path',
        trained,
        '--aug_eval',
        '--flip_horizontal',
        '--scales',
        '0.75',
        '1.0',
        '--json',
        metrics_path,
        *data_opts(synthetic_root),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(metrics_path) as f:
        assert 0.0 <= json.load(f)['miou'] <= 1.0
    result = run_cli(
        'val.py',
        '--config',
        TINY_STUDENT,
        '--model_path',
        trained,
        '--is_slide',
        '--crop_size',
        '32',
        '32',
        *data_opts(synthetic_root),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith('error: --is_slide needs --stride')


# --------------------------------------------------------------------------------------------
# tools/plot_run.py


def write_fake_run(folder, terms, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    with open(os.path.join(folder, 'train_log.jsonl'), 'w') as f:
        for iteration in range(10, 110, 10):
            values = {term: float(rng.uniform(0.1, 1.0)) for term in terms}
            values['loss'] = sum(values.values())
            f.write(
                json.dumps(
                    {
                        'iter': iteration,
                        'tag': 'Train',
                        **values,
                        'lr': 0.01,
                        'batch_cost': 0.3,
                        'reader_cost': 0.01,
                        'ips': 10.0,
                        'cpu_util': 0.9,
                    }
                )
                + '\n'
            )
            if iteration % 50 == 0:
                f.write(
                    json.dumps(
                        {
                            'iter': iteration,
                            'tag': 'Evaluate',
                            'mIoU': float(rng.uniform(0.5, 0.9)),
                            'Acc': 0.9,
                            'Kappa': 0.5,
                            'Dice': 0.7,
                        }
                    )
                    + '\n'
                )
        f.write('{"iter": 110, "tag": "Tr')  # cut off while being written


def test_plot_reads_loss_terms_of_resumed_runs(tmp_path):
    from slim.benchmark.run_plot import loss_terms, read_run_log

    write_fake_run(str(tmp_path / 'run'), ['CrossEntropyLoss', 'KLDivergenceLoss(logits)'], 0)
    with open(tmp_path / 'run' / 'train_log.jsonl', 'a') as f:  # resumed at iter 50
        f.write('\n' + json.dumps({'iter': 60, 'tag': 'Train', 'loss': 9.0, 'lr': 0.1}) + '\n')
    records = read_run_log(str(tmp_path / 'run'))
    assert loss_terms(records['Train']) == ['loss', 'CrossEntropyLoss', 'KLDivergenceLoss(logits)']
    assert records['Train'][60]['loss'] == 9.0 and sorted(records['Evaluate']) == [50, 100]


def test_plot_run_writes_png_without_paddle(tmp_path):
    write_fake_run(str(tmp_path / 'student'), ['CrossEntropyLoss'], 0)
    write_fake_run(str(tmp_path / 'distilled'), ['CrossEntropyLoss', 'KLDivergenceLoss'], 1)
    out = tmp_path / 'plots' / 'runs.png'
    code = (
        'import runpy, sys; sys.argv = ["tools/plot_run.py", sys.argv[1], sys.argv[2], '
        '"--out", sys.argv[3]]; runpy.run_path("tools/plot_run.py", run_name="__main__"); '
        'assert "paddle" not in sys.modules, "plot_run imported paddle"'
    )
    result = subprocess.run(
        [
            sys.executable,
            '-c',
            code,
            str(tmp_path / 'student'),
            str(tmp_path / 'distilled'),
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    image = Image.open(out)
    assert image.size[0] > 600 and np.asarray(image.convert('L')).std() > 5

    missing = run_cli('tools/plot_run.py', str(tmp_path / 'nope'), '--out', str(out))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'train_log.jsonl' in missing.stderr


# --------------------------------------------------------------------------------------------
# tools/quantize.py (PaddleSlim: requirements-slim.txt)


def test_quantize_int8(trained, image_folder, synthetic_root, tmp_path):
    pytest.importorskip(
        'paddleslim.quant',
        reason='PaddleSlim not installed (pip install --no-deps -r requirements-slim.txt)',
    )
    from paddleseg_ext.deploy.quantize import quantize

    float_dir = str(tmp_path / 'float')
    opts = data_opts(synthetic_root)[1:]
    if PADDLE_3:  # PaddleSlim reads only paddle 2's program format: a PIR export says so
        export_model(TINY_STUDENT, trained, float_dir, output_op='none', opts=opts)
        with pytest.raises(UserInputError, match='--program_format pdmodel'):
            quantize(TINY_STUDENT, float_dir, str(tmp_path / 'unused'), opts=opts)
    export_model(
        TINY_STUDENT, trained, float_dir, output_op='none', opts=opts, program_format='pdmodel'
    )
    save_dir = str(tmp_path / 'int8')
    results = quantize(TINY_STUDENT, float_dir, save_dir, batch_nums=4, runs=3, opts=opts)
    assert {'model.pdmodel', 'model.pdiparams', 'deploy.yaml'} <= set(os.listdir(save_dir))
    int8 = InferenceModel(save_dir)
    assert int8.int8 and not InferenceModel(float_dir).int8
    for name in ('float', 'int8'):
        assert 0.0 <= results[name]['miou'] <= 1.0 and results[name]['latency_ms'] > 0
    assert results['int8']['params_mb'] < results['float']['params_mb'] / 2
    assert abs(results['int8']['miou'] - results['float']['miou']) < 0.1
    written = predict(
        TINY_STUDENT,
        image_folder,
        str(tmp_path / 'pred'),
        inference_dir=save_dir,
        opts=data_opts(synthetic_root)[1:],
    )
    assert len(written) == 2 and all(os.path.isfile(mask) for mask, _ in written)


def test_quantized_mobileseg_runs_on_small_images(synthetic_root, tmp_path):
    """MobileSeg's context module pools a 64x64 image's 2x2 map into 4x4 bins: oneDNN has no
    int8 kernel for that pooling, so only convolutions and matmuls run in int8. On paddle 3
    the export for PaddleSlim stops with one line instead (paddle 3.3's old IR)."""
    pytest.importorskip(
        'paddleslim.quant',
        reason='PaddleSlim not installed (pip install --no-deps -r requirements-slim.txt)',
    )
    from paddleseg_ext.deploy.quantize import quantize

    config = os.path.join(
        REPO_ROOT, 'configs', 'cpu', 'mobileseg_mobilenetv3_large_optic_disc_64x64_student.yml'
    )
    opts = data_opts(synthetic_root)[1:]
    model, _ = build_model_without_weights(load_config(config, opts=opts))
    weights = str(tmp_path / 'init.pdparams')
    paddle.save(model.state_dict(), weights)
    float_dir = str(tmp_path / 'float')
    if PADDLE_3:  # its old IR cannot trace MobileNetV3: one line says so (README)
        with pytest.raises(UserInputError, match='cannot trace this model'):
            export_model(
                config, weights, float_dir, output_op='none', opts=opts, program_format='pdmodel'
            )
        return
    export_model(config, weights, float_dir, output_op='none', opts=opts, program_format='pdmodel')
    results = quantize(config, float_dir, str(tmp_path / 'int8'), batch_nums=2, runs=2, opts=opts)
    assert 0.0 <= results['int8']['miou'] <= 1.0 and results['int8']['latency_ms'] > 0


def test_predict_folder_names_skipped_files_and_goes_past_a_corrupt_image(
    exported, image_folder, synthetic_root, tmp_path
):
    folder = tmp_path / 'mixed'
    shutil.copytree(image_folder, folder)
    (folder / 'notes.txt').write_text('not an image')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    good = sorted(os.listdir(image_folder))
    result = run_cli(
        'tools/predict.py',
        '--config',
        TINY_STUDENT,
        '--inference_dir',
        exported,
        '--image_path',
        str(folder),
        '--save_dir',
        str(tmp_path / 'out'),
        *data_opts(synthetic_root),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"skipped '{folder / 'notes.txt'}': not an image" in output
    assert f"skipped: image '{folder / 'broken.jpg'}' cannot be read" in output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith('error: 1 of 3 image(s) could not be read'), error
    assert str(folder / 'broken.jpg') in error and 'Traceback' not in output
    # broken.jpg sorts first: the images after it were still predicted.
    predicted = sorted(os.listdir(tmp_path / 'out' / 'pseudo_color_prediction'))
    assert predicted == [os.path.splitext(name)[0] + '.png' for name in good]
