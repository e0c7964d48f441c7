"""distill_train.py: a frozen teacher, a trained student, what is saved, and every mistake as
one line. End to end through the CLI (subprocesses), plus in-process unit tests of the
Distiller (gradients, frozen teacher, iteration windows)."""

import hashlib
import json
import os
from typing import Sequence

import numpy as np
import paddle
import pytest
from conftest import TEST_CONFIGS, data_opts, error_line, run_cli
from paddleseg.cvlibs import SegBuilder

from paddleseg_ext import weights
from paddleseg_ext.components import build
from paddleseg_ext.config import load_config
from paddleseg_ext.engine.optimizer import build_optimizer
from paddleseg_ext.engine.trainer import Progress, Trainer, TrainOptions
from paddleseg_ext.errors import UserInputError
from slim.distill import DistillModel, distill_model_factory
from slim.distill.losses import FSPLoss, KLDivergenceLoss, L2Loss
from slim.distill.recorder import FeatureRef, Recorder, select
from slim.distill.schema import parse_terms
from slim.distill.terms import DistillTerm, LossArguments

TEACHER_CFG = os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')
STUDENT_CFG = os.path.join(TEST_CONFIGS, 'tiny_student.yml')
STUDENT_CWD_CFG = os.path.join(TEST_CONFIGS, 'tiny_student_cwd.yml')
STUDENT_AUTO_CFG = os.path.join(TEST_CONFIGS, 'tiny_student_auto.yml')
BASE_CFG = os.path.join(TEST_CONFIGS, 'tiny_base.yml')


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def output_of(result):
    return result.stdout + result.stderr


def distill(*args, timeout=240):
    return run_cli('distill_train.py', '--allow_weak_teacher', *args, timeout=timeout)


def plain_student_keys():
    """Key set and shapes of the student built from tiny_student.yml, with no distillation."""
    config = load_config(STUDENT_CFG)
    model = build(SegBuilder(config), 'model')
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def assert_user_error(result, *fragments, save_dir=None):
    """error_line's checks, with the error line the whole of stderr and nothing saved."""
    message = error_line(result, *fragments)
    assert result.stderr.strip() == message, result.stderr
    if save_dir is not None:
        assert not os.path.exists(save_dir) or os.listdir(save_dir) == [], os.listdir(save_dir)
    return message


def write_yaml(path, text):
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- fixtures


def distill_run(flag, student_cfg, synthetic_root, teacher_weights, save_dir):
    """A 2-iteration distill_train.py run, with the teacher file's digest before and after."""
    digest = sha256(teacher_weights)
    result = distill(
        flag,
        TEACHER_CFG,
        '--student_config',
        student_cfg,
        '--teacher_model_path',
        teacher_weights,
        '--iters',
        '2',
        '--save_interval',
        '2',
        '--do_eval',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
    )
    return {
        'result': result,
        'save_dir': save_dir,
        'digest_before': digest,
        'digest_after': sha256(teacher_weights),
    }


@pytest.fixture(scope='module')
def kl_run(synthetic_root, teacher_weights, tmp_path_factory):
    """distill_train.py with the PaddleSeg tutorial's spelling --teather_config, KL only."""
    return distill_run(
        '--teather_config',
        STUDENT_CFG,
        synthetic_root,
        teacher_weights,
        str(tmp_path_factory.mktemp('kl_run') / 'out'),
    )


@pytest.fixture(scope='module')
def cwd_run(synthetic_root, teacher_weights, tmp_path_factory):
    """--teacher_config spelling, KL + ChannelWiseDistillLoss with an align layer."""
    return distill_run(
        '--teacher_config',
        STUDENT_CWD_CFG,
        synthetic_root,
        teacher_weights,
        str(tmp_path_factory.mktemp('cwd_run') / 'out'),
    )


# --------------------------------------------------------------------------- end to end


def test_kl_distillation_trains_and_saves_a_plain_student(kl_run, synthetic_root, tmp_path):
    result, save_dir = kl_run['result'], kl_run['save_dir']
    assert result.returncode == 0, output_of(result)
    train_lines = [line for line in output_of(result).splitlines() if '[TRAIN]' in line]
    assert train_lines, output_of(result)
    assert 'KLDivergenceLoss(logits): ' in train_lines[-1], train_lines[-1]
    assert 'ChannelWiseDistillLoss' not in output_of(result)
    # The teacher's weights are read, never written.
    assert kl_run['digest_after'] == kl_run['digest_before']

    best = os.path.join(save_dir, 'best_model', 'model.pdparams')
    assert os.path.isfile(best), os.listdir(save_dir)
    assert os.path.isfile(os.path.join(save_dir, 'iter_2', 'model.pdparams'))
    state = weights.load(best)
    expected = plain_student_keys()
    assert set(state) == set(expected), set(state) ^ set(expected)
    assert {k: list(v.shape) for k, v in state.items()} == expected

    metrics_path = str(tmp_path / 'metrics.json')
    val = run_cli(
        'val.py',
        '--config',
        STUDENT_CFG,
        '--model_path',
        best,
        '--json',
        metrics_path,
        *data_opts(synthetic_root),
        timeout=120,
    )
    assert val.returncode == 0, output_of(val)
    with open(metrics_path) as f:
        metrics = json.load(f)
    assert 0.0 <= metrics['miou'] <= 1.0, metrics


def test_feature_distillation_with_a_connector_saves_a_plain_student(cwd_run):
    result, save_dir = cwd_run['result'], cwd_run['save_dir']
    assert result.returncode == 0, output_of(result)
    train_lines = [line for line in output_of(result).splitlines() if '[TRAIN]' in line]
    assert train_lines, output_of(result)
    assert 'KLDivergenceLoss(logits): ' in train_lines[-1], train_lines[-1]
    assert 'ChannelWiseDistillLoss(backbone.bb_2_1): ' in train_lines[-1], train_lines[-1]
    assert cwd_run['digest_after'] == cwd_run['digest_before']

    expected = plain_student_keys()
    for sub in ('best_model', 'iter_2'):
        path = os.path.join(save_dir, sub, 'model.pdparams')
        assert os.path.isfile(path), os.listdir(save_dir)
        state = weights.load(path)
        assert not [k for k in state if 'term' in k or 'connector' in k]
        assert set(state) == set(expected), (sub, set(state) ^ set(expected))
        assert {k: list(v.shape) for k, v in state.items()} == expected
    # The connector (256 -> 1024 channels) is kept apart, for resuming.
    train_state = weights.load(os.path.join(save_dir, 'iter_2', 'train_state.pdstates'))
    conv = [v for k, v in train_state['auxiliary'].items() if k.endswith('conv.weight')]
    assert [list(v.shape) for v in conv] == [[1024, 256, 1, 1]], train_state['auxiliary'].keys()


def test_list_layers_prints_both_models_with_shapes(tmp_path):
    save_dir = str(tmp_path / 'out')
    result = distill(
        '--teather_config',
        TEACHER_CFG,
        '--student_config',
        STUDENT_CWD_CFG,
        '--list_layers',
        '--save_dir',
        save_dir,
        timeout=120,
    )
    assert result.returncode == 0, output_of(result)
    out = result.stdout
    assert '# teacher:' in out and '# student:' in out, out[-2000:]
    teacher_part, student_part = out.split('# student:', 1)
    teacher_rows = {
        line.split()[0]: line for line in teacher_part.splitlines() if line.startswith('backbone.')
    }
    student_rows = {
        line.split()[0]: line for line in student_part.splitlines() if line.startswith('backbone.')
    }
    # The configs train at 64x64: output stride 16 gives 4x4 at that stage.
    header = next(line for line in teacher_part.splitlines() if line.startswith('# teacher:'))
    assert 'input [1, 3, 64, 64]' in header, header
    assert '[1, 1024, 4, 4]' in teacher_rows['backbone.bb_2_5'], teacher_rows.get('backbone.bb_2_5')
    assert '[1, 256, 4, 4]' in student_rows['backbone.bb_2_1'], student_rows.get('backbone.bb_2_1')
    assert 'backbone.bb_2_5' not in student_rows  # ResNet18 has two blocks per stage
    assert not os.path.exists(save_dir)


def test_list_layers_with_a_prefix_prints_only_the_paths_under_it():
    result = distill(
        '--teather_config',
        TEACHER_CFG,
        '--student_config',
        STUDENT_CWD_CFG,
        '--list_layers',
        'backbone.bb_2',
        timeout=120,
    )
    assert result.returncode == 0, output_of(result)
    rows = [
        line
        for line in result.stdout.splitlines()
        if line and not line.startswith('#') and '[INFO]' not in line
    ]
    assert rows and all(line.startswith('backbone.bb_2') for line in rows), rows
    assert any(line.startswith('backbone.bb_2_5 ') for line in rows)
    assert "paths under 'backbone.bb_2'" in result.stdout


def test_two_process_cpu_launch(synthetic_root, teacher_weights, tmp_path):
    """KL and a feature term with coef auto: both ranks measure their gradients and agree on
    the coefficients (an all-reduce each must join), and both score the teacher."""
    save_dir = str(tmp_path / 'out')
    log_dir = str(tmp_path / 'log')
    # No extra environment is needed on CPU: launch falls back to gloo with 2 CPU processes.
    result = run_cli(
        '-m',
        'paddle.distributed.launch',
        '--nproc_per_node',
        '2',
        '--log_dir',
        log_dir,
        'distill_train.py',
        '--allow_weak_teacher',
        '--teacher_config',
        TEACHER_CFG,
        '--student_config',
        STUDENT_AUTO_CFG,
        '--teacher_model_path',
        teacher_weights,
        '--iters',
        '2',
        '--save_interval',
        '2',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
        timeout=240,
    )
    logs = ''
    for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
        if name.startswith('workerlog'):
            with open(os.path.join(log_dir, name)) as f:
                logs += f'--- {name}\n' + f.read()[-3000:]
    assert result.returncode == 0, output_of(result)[-3000:] + logs
    assert os.path.isfile(os.path.join(save_dir, 'iter_2', 'model.pdparams')), logs
    assert '2 process(es)' in logs, logs
    assert 'ChannelWiseDistillLoss(backbone.bb_2_1)' in logs, logs
    assert logs.count('coef auto:') == 2 and 'Teacher check:' in logs, logs
    state = weights.load(os.path.join(save_dir, 'iter_2', 'train_state.pdstates'))
    assert np.all(np.asarray(state['auxiliary']['coefs']) > 0)


# --------------------------------------------------------------------------- in process


@pytest.fixture(scope='module')
def cwd_trainer(synthetic_root, teacher_weights, tmp_path_factory):
    """The engine's Trainer over the distillation model of tiny_student_cwd.yml."""
    config = load_config(STUDENT_CWD_CFG, opts=data_opts(synthetic_root)[1:])
    builder = SegBuilder(config)
    model = distill_model_factory(
        TEACHER_CFG, STUDENT_CWD_CFG, teacher_weights, allow_weak_teacher=True
    )(config, builder)
    options = TrainOptions(save_dir=str(tmp_path_factory.mktemp('step')))
    return Trainer(options, config, builder, model)


def gradient_sums(model):
    """Hooks that record |grad|.sum() of every trainable parameter, by name, in backward."""
    sums, handles = {}, []
    for name, param in model.named_parameters():
        if not param.stop_gradient:
            handles.append(
                param.register_hook(
                    lambda grad, name=name: sums.__setitem__(name, float(grad.abs().sum()))
                )
            )
    return sums, handles


def test_engine_step_trains_student_and_connectors_never_the_teacher(cwd_trainer, teacher_weights):
    model = cwd_trainer.model
    teacher = model.teacher.model
    # The teacher was loaded from the file and stays frozen, in eval mode, outside the model.
    saved = weights.load(teacher_weights)
    for key, value in teacher.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), saved[key].numpy(), err_msg=key)
    teacher_names = {p.name for p in teacher.parameters()}
    assert teacher_names and not teacher_names & {p.name for p in model.parameters()}
    assert not [k for k in model.state_dict() if k.startswith('teacher')]
    connector_params = list(model.auxiliary.connectors.parameters())
    assert connector_params, 'align: auto with 256 vs 1024 channels builds a connector'

    optimizer = build_optimizer(cwd_trainer.builder, model)
    student_before = {k: v.numpy().copy() for k, v in model.student.state_dict().items()}
    sums, handles = gradient_sums(model)
    model.train()  # as the trainer does before its loop
    paddle.seed(0)
    batch = {
        'img': paddle.randn([2, 3, 64, 64]),
        'label': paddle.randint(0, 2, [2, 64, 64], dtype='int64'),
    }
    values, _ = cwd_trainer.step(model, optimizer, None, Progress(seed=0, iter=1), batch)
    for handle in handles:
        handle.remove()

    assert list(values) == [
        'CrossEntropyLoss',
        'KLDivergenceLoss(logits)',
        'ChannelWiseDistillLoss(backbone.bb_2_1)',
        'loss',
    ]
    assert all(np.isfinite(value) for value in values.values())
    assert abs(values['loss'] - sum(v for k, v in values.items() if k != 'loss')) < 1e-4
    trainable = [n for n, p in model.named_parameters() if not p.stop_gradient]
    assert sorted(sums) == sorted(trainable), set(trainable) ^ set(sums)
    # Each backbone stage, the head and the connector receive signal.
    for prefix in (
        'student.backbone.conv1',
        'student.backbone.bb_0',
        'student.backbone.bb_2_1',
        'student.backbone.bb_3',
        'student.head',
        'trained_beside.connectors.term1_0',
    ):
        assert sum(v for n, v in sums.items() if n.startswith(prefix)) > 0, prefix
    for name, param in teacher.named_parameters():
        assert param.stop_gradient and param.grad is None, name
    for key, value in teacher.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), saved[key].numpy(), err_msg=key)
    changed = [
        k
        for k, v in model.student.state_dict().items()
        if not np.array_equal(v.numpy(), student_before[k])
    ]
    assert changed, 'the optimizer step must update the student'
    assert all(not layer.training for layer in teacher.sublayers(include_self=True))


def kl_term(**window):
    return DistillTerm(
        name='KLDivergenceLoss(logits)',
        loss=KLDivergenceLoss(),
        coef=3.0,
        arguments=LossArguments.of(KLDivergenceLoss, 'test'),
        **window,
    )


def test_term_window_is_start_exclusive_end_inclusive():
    term = kl_term(start_iter=2, end_iter=3)
    assert [term.active(i) for i in range(1, 6)] == [False, False, True, False, False]
    open_ended = kl_term(start_iter=1)
    assert [open_ended.active(i) for i in (1, 2, 1000)] == [False, True, True]


class OneConv(paddle.nn.Layer):
    """A 'segmentation model' of one conv: returns [logits] as paddleseg models do."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 1)

    def forward(self, x):
        return [self.conv(x)]


def test_teacher_runs_only_inside_a_window():
    calls = []

    def teacher(images):
        calls.append(images)
        return paddle.zeros([1, 2, 4, 4]), {}

    def supervised(logits_list, label):
        return {'supervised': logits_list[0].mean()}

    model = DistillModel(
        OneConv(), supervised, [kl_term(start_iter=2, end_iter=3)], teacher=teacher
    )
    model.train()
    batch = {'img': paddle.zeros([1, 3, 4, 4]), 'label': paddle.zeros([1, 4, 4], 'int64')}
    for iteration in (1, 2, 4, 5):
        assert list(model(batch, iteration)) == ['supervised']
    assert calls == []
    assert list(model(batch, 3)) == ['supervised', 'KLDivergenceLoss(logits)']
    assert len(calls) == 1
    model.eval()
    assert list(model(batch['img'])[0].shape) == [1, 2, 4, 4]  # evaluation: the logits


def test_window_and_refs_from_yaml(tmp_path, synthetic_root):
    path = write_yaml(
        tmp_path / 'window.yml',
        f"""
_base_: '{STUDENT_CFG}'
distill_features:
  - student: {{path: backbone, index: 2}}
    teacher: {{path: head.decoder.conv, io: input}}
    loss: {{type: ChannelWiseDistillLoss, tau: 4}}
    align: auto
    start_iter: 2
    end_iter: 3
  - student: [backbone.bb_1_1, backbone.bb_2_1]
    teacher: [backbone.bb_1_3, backbone.bb_2_5]
    loss: {{type: FSPLoss}}
    connector: {{type: ConvConnector}}
""",
    )
    config = load_config(path, opts=data_opts(synthetic_root)[1:])
    terms = parse_terms(config, SegBuilder(config).build_component)
    assert [t.name for t in terms] == [
        'KLDivergenceLoss(logits)',
        'ChannelWiseDistillLoss(backbone[2])',
        'FSPLoss(backbone.bb_1_1)',
    ]
    feature, fsp = terms[1], terms[2]
    assert feature.student_refs == [FeatureRef('backbone', 'output', 2)]
    assert feature.teacher_refs == [FeatureRef('head.decoder.conv', 'input')]
    assert (feature.start_iter, feature.end_iter, feature.connector) == (2, 3, 'auto')
    assert [feature.active(i) for i in range(1, 6)] == [False, False, True, False, False]
    assert all(terms[0].active(i) for i in range(1, 6))
    assert fsp.arguments.tensors_per_model == 2 and fsp.connector == {'type': 'ConvConnector'}
    assert fsp.teacher_refs == [FeatureRef('backbone.bb_1_3'), FeatureRef('backbone.bb_2_5')]


def test_null_distill_loss_drops_the_base_configs_logit_terms(tmp_path, synthetic_root):
    path = write_yaml(
        tmp_path / 'features_only.yml',
        f"""
_base_: '{STUDENT_CFG}'
distill_loss: null
distill_features:
  - {{student: backbone.bb_2_1, teacher: backbone.bb_2_5, loss: {{type: L2Loss}}, align: auto}}
""",
    )
    config = load_config(path, opts=data_opts(synthetic_root)[1:])
    terms = parse_terms(config, SegBuilder(config).build_component)
    assert [t.name for t in terms] == ['L2Loss(backbone.bb_2_1)']


def test_recorder_takes_inputs_and_list_elements():
    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.first = paddle.nn.Conv2D(3, 4, 1)
            self.second = paddle.nn.Conv2D(4, 2, 1)

        def forward(self, x):
            return [self.second(self.first(x)), x]

    net = Net()
    refs = [FeatureRef('second', 'input'), FeatureRef('first'), FeatureRef('', 'output', 1)]
    recorder = Recorder(net, refs[:2], 'student')
    x = paddle.randn([1, 3, 4, 4])
    (logits, _), records = recorder.record(net, x)
    np.testing.assert_array_equal(records[refs[0]].numpy(), net.first(x).numpy())
    np.testing.assert_array_equal(records[refs[1]].numpy(), net.first(x).numpy())
    assert recorder.record(lambda t: t, x)[1] == {}  # hooks fire only inside record()
    with pytest.raises(
        UserInputError,
        match=r"where: layer 'first' returns a list of 2 tensors: "
        r'pick one with \{path: first, index: N\}, N in 0..1',
    ):
        select([x, x], FeatureRef('first'), 'where')
    with pytest.raises(UserInputError, match='gives one tensor, not a list: remove index'):
        select(x, FeatureRef('first', 'output', 0), 'where')


class TakesPrediction(paddle.nn.Layer):
    def forward(self, prediction, teacher):
        return prediction


class StudentOnly(paddle.nn.Layer):
    def forward(self, student, label=None):
        return student


class AnyNumber(paddle.nn.Layer):
    def forward(self, student: Sequence[paddle.Tensor], teacher, **extra):
        return student[0]


def test_loss_arguments_are_read_from_the_signature():
    assert LossArguments.of(KLDivergenceLoss, 'w') == LossArguments(('student', 'teacher', 'label'))
    assert LossArguments.of(FSPLoss, 'w') == LossArguments(('student', 'teacher'), 2)
    assert LossArguments.of(AnyNumber, 'w') == LossArguments(('student', 'teacher', 'label'), 0)
    with pytest.raises(
        UserInputError,
        match="w: TakesPrediction takes 'prediction', which a distillation term cannot give",
    ):
        LossArguments.of(TakesPrediction, 'w')
    with pytest.raises(UserInputError, match='does not take both `student` and `teacher`'):
        LossArguments.of(StudentOnly, 'w')


def test_term_binds_tensors_by_name():
    seen = {}

    class Spy(paddle.nn.Layer):
        def forward(self, teacher, student):
            seen.update(student=student, teacher=teacher)
            return paddle.to_tensor(2.0)

    term = DistillTerm(name='spy', loss=Spy(), coef=0.5, arguments=LossArguments.of(Spy, 'w'))
    student, teacher = paddle.ones([1]), paddle.zeros([1])
    assert float(term([student], [teacher], label='not passed')) == 2.0  # unweighted
    assert seen == {'student': student, 'teacher': teacher}


# --------------------------------------------------------------------------- mistakes


@pytest.fixture
def err_dir(tmp_path):
    return str(tmp_path / 'out')


def run_err(save_dir, root, teacher_cfg, student_cfg, *extra):
    return distill(
        '--teather_config',
        teacher_cfg,
        '--student_config',
        student_cfg,
        '--iters',
        '2',
        '--save_dir',
        save_dir,
        *extra,
        *data_opts(root),
        timeout=120,
    )


def test_num_classes_differ(tmp_path, err_dir, synthetic_root, teacher_weights):
    teacher3 = write_yaml(
        tmp_path / 'teacher3.yml', f"_base_: '{TEACHER_CFG}'\nmodel: {{num_classes: 3}}\n"
    )
    result = run_err(
        err_dir, synthetic_root, teacher3, STUDENT_CFG, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        f'{teacher3}: building model failed',
        'num_classes is not consistent for model config (3)',
        save_dir=err_dir,
    )


def test_num_classes_differ_between_model_only_configs(
    tmp_path, err_dir, synthetic_root, teacher_weights
):
    with open(TEACHER_CFG) as f:
        model_part = f.read().split('model:', 1)[1].replace('num_classes: 2', 'num_classes: 3')
    teacher3 = write_yaml(tmp_path / 'teacher3_model_only.yml', 'model:' + model_part)
    result = run_err(
        err_dir, synthetic_root, teacher3, STUDENT_CFG, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        f'teacher ({teacher3}) predicts 3 classes but the student',
        '2: num_classes must match',
        save_dir=err_dir,
    )


FEATURE_ITEM = """
_base_: '{base}'
distill_features:
  - student: {student}
    teacher: {teacher}
    loss: {{type: {loss}, tau: 4}}
{extra}"""


def feature_config(
    tmp_path,
    student='backbone.bb_2_1',
    teacher='backbone.bb_2_5',
    loss='ChannelWiseDistillLoss',
    extra='    align: auto\n',
):
    return write_yaml(
        tmp_path / 'student.yml',
        FEATURE_ITEM.format(
            base=STUDENT_CFG, student=student, teacher=teacher, loss=loss, extra=extra
        ),
    )


def test_unknown_student_layer_names_the_student_and_lists_closest(
    tmp_path, err_dir, synthetic_root, teacher_weights
):
    student = feature_config(tmp_path, student='backbone.bb_2_9')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    message = assert_user_error(
        result,
        "student layer 'backbone.bb_2_9' does not exist in the student model",
        'closest: ',
        'backbone.bb_2_1',
        '--list_layers',
        save_dir=err_dir,
    )
    # Only names of the student model are suggested (ResNet18 has no bb_2_5).
    assert 'backbone.bb_2_5' not in message


def test_unknown_teacher_layer_lists_closest(tmp_path, err_dir, synthetic_root, teacher_weights):
    student = feature_config(tmp_path, teacher='backbone.bb_2_55')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        "teacher layer 'backbone.bb_2_55' does not exist in the teacher model",
        'closest: ',
        'backbone.bb_2_5',
        save_dir=err_dir,
    )


def test_unknown_loss_type_lists_registered_losses(
    tmp_path, err_dir, synthetic_root, teacher_weights
):
    student = feature_config(tmp_path, loss='ChanelWiseLoss')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        student,
        "distill_features[0].loss: unknown type 'ChanelWiseLoss'",
        'registered losses: ',
        'ChannelWiseDistillLoss',
        'KLDivergenceLoss',
        save_dir=err_dir,
    )


def test_channel_mismatch_without_align(tmp_path, err_dir, synthetic_root, teacher_weights):
    student = feature_config(tmp_path, extra='')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        'student backbone.bb_2_1 has 256 channels [1, 256, 8, 8]',
        'teacher backbone.bb_2_5 has 1024 [1, 1024, 8, 8]',
        'align: auto',
        save_dir=err_dir,
    )


def test_unknown_key_in_feature_item_suggests_closest(
    tmp_path, err_dir, synthetic_root, teacher_weights
):
    student = feature_config(tmp_path, extra='    alignn: auto\n')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        "distill_features[0]: unknown key 'alignn'",
        "(did you mean 'align'?)",
        'valid keys are',
        save_dir=err_dir,
    )


def test_nothing_to_distill(tmp_path, err_dir, synthetic_root, teacher_weights):
    with open(STUDENT_CFG) as f:
        model_part = f.read().split('distill_loss:')[0].replace("'tiny_base.yml'", repr(BASE_CFG))
    student = write_yaml(tmp_path / 'plain_student.yml', model_part)
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        student,
        'no distill_loss and no distill_features',
        'nothing to distill',
        save_dir=err_dir,
    )


def test_teacher_weights_missing(tmp_path, err_dir, synthetic_root):
    missing = str(tmp_path / 'nowhere' / 'model.pdparams')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, STUDENT_CFG, '--teacher_model_path', missing
    )
    assert_user_error(result, f"teacher weights '{missing}' do not exist", save_dir=err_dir)


def test_no_teacher_weights_at_all(err_dir, synthetic_root):
    result = run_err(err_dir, synthetic_root, TEACHER_CFG, STUDENT_CFG)
    assert_user_error(
        result,
        'the teacher has no weights',
        'model.pretrained',
        '--teacher_model_path',
        save_dir=err_dir,
    )


def test_student_weights_as_teacher_weights(err_dir, synthetic_root, kl_run):
    student_weights = os.path.join(kl_run['save_dir'], 'best_model', 'model.pdparams')
    assert os.path.isfile(student_weights), output_of(kl_run['result'])
    digest = sha256(student_weights)
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, STUDENT_CFG, '--teacher_model_path', student_weights
    )
    assert_user_error(
        result,
        f"teacher weights '{student_weights}' do not fit the teacher config",
        'missing keys',
        save_dir=err_dir,
    )
    assert sha256(student_weights) == digest


def test_teacher_weights_with_a_wrong_shape(tmp_path, err_dir, synthetic_root, teacher_weights):
    state = weights.load(teacher_weights)
    key = next(k for k, v in state.items() if len(v.shape) == 4)
    shape = list(state[key].shape)
    wrong = [shape[0] + 1] + shape[1:]
    state[key] = paddle.zeros(wrong, dtype=state[key].dtype)
    bad = str(tmp_path / 'bad_teacher.pdparams')
    paddle.save(state, bad)
    result = run_err(err_dir, synthetic_root, TEACHER_CFG, STUDENT_CFG, '--teacher_model_path', bad)
    assert_user_error(
        result,
        f"teacher weights '{bad}': {key} has shape {wrong}",
        f'expects {shape}',
        save_dir=err_dir,
    )


def test_error_stderr_is_exactly_one_line(err_dir, synthetic_root):
    result = run_err(err_dir, synthetic_root, TEACHER_CFG, STUDENT_CFG)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_distill_loss_item_without_type(tmp_path, err_dir, synthetic_root, teacher_weights):
    student = write_yaml(
        tmp_path / 'student.yml',
        f"""
_base_: '{STUDENT_CFG}'
distill_loss:
  types:
    - {{temperature: 2}}
  coef: [1]
""",
    )
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(result, 'distill_loss', 'type', save_dir=err_dir)


def test_unknown_loss_argument(tmp_path, err_dir, synthetic_root, teacher_weights):
    student = write_yaml(
        tmp_path / 'student.yml',
        FEATURE_ITEM.format(
            base=STUDENT_CFG,
            student='backbone.bb_2_1',
            teacher='backbone.bb_2_5',
            loss='ChannelWiseDistillLoss',
            extra='    align: auto\n',
        ).replace('tau: 4', 'tauu: 4'),
    )
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(result, 'distill_features[0]', 'tauu', save_dir=err_dir)


def test_one_layer_written_as_a_list(tmp_path, err_dir, synthetic_root, teacher_weights):
    student = feature_config(tmp_path, student='[backbone.bb_2_1]', teacher='[backbone.bb_2_5]')
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        f'{student}: distill_features[0].student: ChannelWiseDistillLoss '
        'compares one tensor per model: give one layer reference, not a list',
        save_dir=err_dir,
    )


def test_fsp_with_one_layer_per_model(tmp_path, err_dir, synthetic_root, teacher_weights):
    student = write_yaml(
        tmp_path / 'fsp.yml',
        FEATURE_ITEM.format(
            base=STUDENT_CFG,
            student='backbone.bb_2_1',
            teacher='backbone.bb_2_5',
            loss='FSPLoss',
            extra='',
        ).replace(', tau: 4', ''),
    )
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        'distill_features[0].student: FSPLoss compares 2 layers per '
        'model: give a list of 2 layer references',
        save_dir=err_dir,
    )


INDEXED_BACKBONE = """
_base_: '{base}'
distill_features: [{{student: {student}, teacher: {{path: backbone, index: 1}},
                     loss: {{type: ChannelWiseDistillLoss, tau: 4}}, coef: 3, align: auto}}]
"""


def test_an_element_of_a_list_output_trains(tmp_path, synthetic_root, teacher_weights):
    student = write_yaml(
        tmp_path / 'indexed.yml',
        INDEXED_BACKBONE.format(base=STUDENT_CFG, student='{path: backbone, index: 1}'),
    )
    save_dir = str(tmp_path / 'out')
    result = run_err(
        save_dir,
        synthetic_root,
        TEACHER_CFG,
        student,
        '--teacher_model_path',
        teacher_weights,
        '--log_iters',
        '1',
    )
    assert result.returncode == 0, output_of(result)[-3000:]
    assert 'ChannelWiseDistillLoss(backbone[1]): ' in output_of(result)
    assert os.path.isfile(os.path.join(save_dir, 'iter_2', 'model.pdparams'))


def test_a_list_output_without_index_names_the_layer(
    tmp_path, err_dir, synthetic_root, teacher_weights
):
    student = write_yaml(
        tmp_path / 'unindexed.yml', INDEXED_BACKBONE.format(base=STUDENT_CFG, student='backbone')
    )
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(
        result,
        f"{student}: distill_features[0].student: layer 'backbone' "
        'returns a list of 4 tensors: pick one with {path: backbone, index: N}',
        save_dir=err_dir,
    )


RELATION_TERMS = """
_base_: '{base}'
distill_loss:
  types:
    - {{type: DISTLoss, tau: 2}}
    - {{type: PairwiseAffinityLoss, scale: 0.125}}
  coef: [1, 1]
distill_features:
  - student: backbone.bb_2_1
    teacher: backbone.bb_2_5
    loss: {{type: DISTLoss}}
    align: auto
  - student: backbone.bb_2_1          # 256 channels against 1024: no connector needed
    teacher: backbone.bb_2_5
    loss: {{type: PairwiseAffinityLoss, scale: 0.5, pool: max}}
"""


def test_dist_and_pairwise_train_from_yaml_on_logits_and_features(
    tmp_path, synthetic_root, teacher_weights
):
    path = write_yaml(tmp_path / 'relations.yml', RELATION_TERMS.format(base=STUDENT_CFG))
    config = load_config(path, opts=data_opts(synthetic_root)[1:])
    builder = SegBuilder(config)
    model = distill_model_factory(TEACHER_CFG, path, teacher_weights, allow_weak_teacher=True)(
        config, builder
    )
    trainer = Trainer(TrainOptions(save_dir=str(tmp_path / 'out')), config, builder, model)
    # Only the DIST feature term has a connector (align: auto, 256 -> 1024 channels).
    assert [
        list(p.shape)
        for n, p in model.auxiliary.connectors.named_parameters()
        if n.endswith('conv.weight')
    ] == [[1024, 256, 1, 1]]

    optimizer = build_optimizer(builder, model)
    before = {k: v.numpy().copy() for k, v in model.student.state_dict().items()}
    model.train()
    paddle.seed(0)
    batch = {
        'img': paddle.randn([2, 3, 64, 64]),
        'label': paddle.randint(0, 2, [2, 64, 64], dtype='int64'),
    }
    values, _ = trainer.step(model, optimizer, None, Progress(seed=0, iter=1), batch)

    terms = [
        'DISTLoss(logits)',
        'PairwiseAffinityLoss(logits)',
        'DISTLoss(backbone.bb_2_1)',
        'PairwiseAffinityLoss(backbone.bb_2_1)',
    ]
    assert list(values) == ['CrossEntropyLoss', *terms, 'loss'], list(values)
    for term in terms:
        assert np.isfinite(values[term]) and values[term] > 0, (term, values[term])
    assert any(
        not np.array_equal(v.numpy(), before[k]) for k, v in model.student.state_dict().items()
    )


# --------------------------------------------------------------------------- teacher check


def test_a_teacher_no_better_than_the_majority_class_stops_before_training(
    tmp_path, synthetic_root, teacher_weights
):
    """teacher_weights trained 2 iterations: it predicts one class everywhere."""
    save_dir = str(tmp_path / 'out')
    args = [
        '--teacher_config',
        TEACHER_CFG,
        '--student_config',
        STUDENT_CFG,
        '--teacher_model_path',
        teacher_weights,
        '--iters',
        '2',
        '--save_dir',
        save_dir,
        *data_opts(synthetic_root),
    ]
    result = run_cli('distill_train.py', *args)
    message = assert_user_error(
        result,
        'the teacher scores mIoU',
        'predicting the majority class everywhere',
        TEACHER_CFG,
        '--allow_weak_teacher',
        save_dir=save_dir,
    )
    scores = [float(word.strip(',:')) for word in message.split() if word[:2] == '0.']
    assert len(scores) == 2 and scores[0] <= scores[1], message
    assert '[TRAIN]' not in result.stdout

    allowed = distill(*args)
    assert allowed.returncode == 0, output_of(allowed)[-3000:]
    assert '--allow_weak_teacher' in output_of(allowed) and '[TRAIN]' in allowed.stdout


def test_majority_score_is_the_mean_iou_of_one_class_everywhere(synthetic_root):
    """Against a count of the val labels' pixels: the majority class's IoU is its share of
    the pixels, every other class's 0, and mIoU averages over the classes."""
    from paddleseg.transforms import Normalize
    from PIL import Image

    from paddleseg_ext.datasets import OpticDiscSeg
    from slim.distill.teacher_check import majority_score

    dataset = OpticDiscSeg(synthetic_root, [Normalize()], mode='val')
    counts = np.zeros(2, np.int64)
    for _, label_path in dataset.file_list:
        label = np.asarray(Image.open(label_path)).reshape(-1)
        counts += np.bincount(label[label != 255], minlength=2)
    expected = counts.max() / counts.sum() / 2
    assert majority_score(dataset, 100) == pytest.approx(expected, rel=1e-9)
    first = dataset.file_list[0][1]
    label = np.asarray(Image.open(first)).reshape(-1)
    one = np.bincount(label[label != 255], minlength=2)
    assert majority_score(dataset, 1) == pytest.approx(one.max() / one.sum() / 2, rel=1e-9)


# --------------------------------------------------------------------------- coef: auto


def test_auto_coefficient_balances_the_gradients():
    """coef = ratio * |d supervised / dp| / |d term / dp|: here |2p| = 6 and |3 * 1| = 3 sqrt 3."""
    from slim.distill.calibration import auto_coefficients

    p = paddle.to_tensor([1.0, 2.0, 2.0], stop_gradient=False)
    supervised = paddle.sum(p * p)
    coefs = auto_coefficients(
        supervised, {4: 3.0 * paddle.sum(p), 7: paddle.sum(p * 0)}, [p], ratio=0.3
    )
    assert coefs[4] == pytest.approx(0.3 * 6 / (3 * 3**0.5), rel=1e-6)
    assert coefs[7] is None  # no gradient at all: nothing to balance
    supervised.backward()  # the graph is left for the step's own backward
    np.testing.assert_allclose(p.grad.numpy(), [2.0, 4.0, 4.0])


@pytest.mark.parametrize('auto_ratio', [None, 1.2])
def test_auto_coefficients_are_measured_once_and_shared_among_auto_terms(auto_ratio):
    """Each auto term pulls with its share of the ratio (GRADIENT_RATIO, or the config's
    distill_auto_ratio)."""
    from slim.distill.calibration import GRADIENT_RATIO, gradient_norm

    def teacher(images):
        return paddle.zeros([1, 2, 4, 4]), {}

    def supervised(logits_list, label):
        return {'supervised': paddle.mean(paddle.square(logits_list[0] - 1.0))}

    terms = [
        kl_term(),
        DistillTerm(
            name='L2', loss=L2Loss(), coef='auto', arguments=LossArguments.of(L2Loss, 'test')
        ),
        DistillTerm(
            name='KL2',
            loss=KLDivergenceLoss(),
            coef='auto',
            arguments=LossArguments.of(KLDivergenceLoss, 'test'),
        ),
    ]
    ratio = GRADIENT_RATIO if auto_ratio is None else auto_ratio
    extra = {} if auto_ratio is None else {'auto_ratio': auto_ratio}
    model = DistillModel(OneConv(), supervised, terms, teacher=teacher, **extra)
    model.train()
    paddle.seed(0)
    batch = {'img': paddle.randn([1, 3, 4, 4]), 'label': paddle.zeros([1, 4, 4], 'int64')}
    assert model.coefs() == {'KLDivergenceLoss(logits)': 3.0, 'L2': 'auto', 'KL2': 'auto'}
    first = model(batch, 1)
    coefs = model.coefs()
    assert coefs['KLDivergenceLoss(logits)'] == 3.0 and coefs['L2'] > 0 and coefs['KL2'] > 0
    # Each auto term pulls with half the ratio: its weighted gradient against the labels'.
    params = list(model.student.parameters())
    label_norm = gradient_norm(first['supervised'], params)
    for name in ('L2', 'KL2'):
        assert gradient_norm(first[name], params) == pytest.approx(ratio / 2 * label_norm, rel=1e-4)
    model(batch, 2)
    assert model.coefs() == coefs  # fixed from then on


def test_an_auto_term_without_gradient_is_warned_about_and_weighted_1(capsys):
    """A term whose loss does not move with the student (CWD over one position, say) has no
    pull to balance: the run says so instead of logging a ratio it never measured."""

    class NoGradientLoss(paddle.nn.Layer):
        def forward(self, student, teacher):
            return paddle.sum(student[0].detach() * 0) + 0.5

    def teacher(images):
        return paddle.zeros([1, 2, 4, 4]), {}

    def supervised(logits_list, label):
        return {'supervised': paddle.mean(paddle.square(logits_list[0] - 1.0))}

    term = DistillTerm(
        name='Dead', loss=NoGradientLoss(), coef='auto', arguments=LossArguments.of(L2Loss, 'test')
    )
    model = DistillModel(OneConv(), supervised, [term], teacher=teacher)
    model.train()
    batch = {'img': paddle.randn([1, 3, 4, 4]), 'label': paddle.zeros([1, 4, 4], 'int64')}
    capsys.readouterr()
    model(batch, 1)
    assert model.coefs() == {'Dead': 1.0}
    out = capsys.readouterr()
    line = next(line for line in (out.out + out.err).splitlines() if 'coef auto: Dead' in line)
    assert 'WARNING' in line and 'gives the student no gradient on its first batch' in line


@pytest.mark.parametrize(
    'coef, fragment',
    [
        ('[-1]', 'distill_loss.coef[0]: -1 is negative, which would push the student away'),
        ('[abc]', "distill_loss.coef[0]: expected a number >= 0 or auto, got 'abc'"),
        ('[.inf]', 'distill_loss.coef[0]: expected a number >= 0 or auto, got inf'),
        ('[.nan]', 'distill_loss.coef[0]: expected a number >= 0 or auto, got nan'),
    ],
)
def test_a_negative_or_unreadable_coef_is_one_line(
    tmp_path, err_dir, synthetic_root, coef, fragment
):
    student = write_yaml(
        tmp_path / 'student.yml', f"_base_: '{STUDENT_CFG}'\ndistill_loss:\n  coef: {coef}\n"
    )
    assert_user_error(
        run_err(err_dir, synthetic_root, TEACHER_CFG, student), student, fragment, save_dir=err_dir
    )


@pytest.mark.parametrize('value', ['0', '-0.5', 'abc', '.inf', 'true', '[0.5]'])
def test_a_distill_auto_ratio_that_is_not_a_positive_number_is_one_line(
    tmp_path, err_dir, synthetic_root, value
):
    student = write_yaml(
        tmp_path / 'student.yml',
        f"_base_: '{STUDENT_AUTO_CFG}'\ndistill_auto_ratio: {value}\n",
    )
    assert_user_error(
        run_err(err_dir, synthetic_root, TEACHER_CFG, student),
        student,
        'distill_auto_ratio: expected a number > 0',
        'default 0.5), got',
        save_dir=err_dir,
    )


def test_distill_auto_ratio_sets_the_pull_of_the_auto_terms(
    synthetic_root, teacher_weights, capsys
):
    """The config's ratio reaches the model built from it: on the same start and batch,
    distill_auto_ratio 1.5 chooses three times the coefficients of the default 0.5; and a
    ratio with no auto term says it changes nothing."""
    from slim.distill.schema import parse_auto_ratio

    coefs = {}
    for ratio in (None, 1.5):
        config = load_config(
            STUDENT_AUTO_CFG,
            opts=data_opts(synthetic_root)[1:]
            + ([] if ratio is None else [f'distill_auto_ratio={ratio}']),
        )
        paddle.seed(0)
        model = distill_model_factory(
            TEACHER_CFG, STUDENT_AUTO_CFG, teacher_weights, allow_weak_teacher=True
        )(config, SegBuilder(config))
        model.train()
        paddle.seed(1)
        model(
            {
                'img': paddle.randn([2, 3, 64, 64]),
                'label': paddle.randint(0, 2, [2, 64, 64], dtype='int64'),
            },
            1,
        )
        coefs[ratio] = model.coefs()
    assert coefs[None].keys() == coefs[1.5].keys() and len(coefs[None]) == 2
    for name, coef in coefs[None].items():
        assert coefs[1.5][name] == pytest.approx(3 * coef, rel=1e-4), name

    plain = load_config(STUDENT_CWD_CFG, opts=['distill_auto_ratio=2'])
    terms = parse_terms(plain, SegBuilder(plain).build_component, STUDENT_CWD_CFG)
    capsys.readouterr()
    assert parse_auto_ratio(plain, terms, STUDENT_CWD_CFG) == 2.0
    assert 'distill_auto_ratio is set but no term has coef: auto, so it changes nothing' in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    'loss, fragments',
    [
        (
            '{type: ChannelWiseDistillLoss, tau: -4}',
            ['distill_loss.types[0]', 'ChannelWiseDistillLoss tau must be a positive'],
        ),
        (
            '{type: KLDivergenceLoss, temperature: 0}',
            ['distill_loss.types[0]', 'student_temperature must be a positive'],
        ),
        (
            '{type: DISTLoss, tau: -1}',
            ['distill_loss.types[0]', 'DISTLoss tau must be a positive number, got -1'],
        ),
        # z-scored over two classes a pixel's logits are +1 and -1, which one is ahead: a
        # step whose gradient is zero but for spikes where the student's logits tie.
        (
            '{type: KLDivergenceLoss, standardize: true}',
            [
                'KLDivergenceLoss(logits): KLDivergenceLoss standardize: true',
                'over its 2 channels',
                'set standardize: false',
            ],
        ),
    ],
)
def test_a_loss_argument_that_cannot_work_is_one_line(
    tmp_path, err_dir, synthetic_root, teacher_weights, loss, fragments
):
    student = write_yaml(
        tmp_path / 'student.yml',
        f"_base_: '{STUDENT_CFG}'\ndistill_loss:\n  types: [{loss}]\n  coef: [1]\n",
    )
    result = run_err(
        err_dir, synthetic_root, TEACHER_CFG, student, '--teacher_model_path', teacher_weights
    )
    assert_user_error(result, f'{student}: ', *fragments, save_dir=err_dir)


def test_a_distilled_student_starts_from_the_weights_of_the_student_alone(
    synthetic_root, teacher_weights
):
    """Same seed, same initial student: a benchmark's distilled run and its student alone
    differ by the teacher only."""
    from slim.distill import plain_model

    starts = []
    for make in (
        plain_model,
        distill_model_factory(TEACHER_CFG, STUDENT_CFG, teacher_weights, allow_weak_teacher=True),
    ):
        paddle.seed(5)
        config = load_config(STUDENT_CFG, opts=data_opts(synthetic_root)[1:])
        starts.append(make(config, SegBuilder(config)).student.state_dict())
    assert starts[0].keys() == starts[1].keys()
    for key, value in starts[0].items():
        np.testing.assert_array_equal(value.numpy(), starts[1][key].numpy(), err_msg=key)


def test_paddleseg_tutorial_kl_config_gives_paddleseg_kl_loss(tmp_path):
    """`type: KLLoss, coef: [3]` (PaddleSeg's distillation tutorial) is paddleseg's KLLoss:
    KL averaged over pixels and classes, student as logit_1, ignore_index masked."""
    from paddleseg.models.losses.kl_loss import KLLoss as PaddleSegKLLoss

    student_cfg = write_yaml(
        tmp_path / 'tutorial.yml',
        f"""_base_: '{STUDENT_CFG}'
distill_loss:
  types: [{{type: KLLoss}}]
  coef: [3]
""",
    )
    (term,) = parse_terms(
        load_config(student_cfg), SegBuilder(load_config(student_cfg)).build_component, student_cfg
    )
    assert isinstance(term.loss, PaddleSegKLLoss) and term.coef == 3
    rng = np.random.RandomState(0)
    student, teacher = (rng.randn(2, 3, 4, 5).astype('float32') for _ in range(2))
    label = rng.randint(0, 3, size=(2, 4, 5))
    label[0, 0] = 255
    value = term(
        [paddle.to_tensor(student)],
        [paddle.to_tensor(teacher)],
        paddle.to_tensor(label.astype('int64')),
    )
    expected = PaddleSegKLLoss()(
        paddle.to_tensor(student),
        paddle.to_tensor(teacher),
        paddle.to_tensor(label.astype('int64')),
    )
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-6)
    # And by its definition, in numpy: mean over N, C, H, W of the masked KL terms.
    log_s = student - np.log(np.exp(student).sum(1, keepdims=True))
    p_t = np.exp(teacher) / np.exp(teacher).sum(1, keepdims=True)
    mask = (label != 255)[:, None].astype('float32')
    reference = (p_t * (np.log(p_t) - log_s) * mask).mean() / mask.mean()
    np.testing.assert_allclose(float(value), reference, rtol=1e-4)


def test_a_loss_with_parameters_trains_and_is_kept_in_the_train_state():
    """A distillation loss may learn (e.g. a scale): its parameters reach the optimizer and
    the checkpoint's train state (`auxiliary`), and a resumed model gets them back."""
    from learned_scale_loss import LearnedScaleL2

    def make_model():
        term = DistillTerm(
            name='scaled',
            loss=LearnedScaleL2(),
            coef=1.0,
            arguments=LossArguments.of(LearnedScaleL2, 'test'),
        )
        return DistillModel(
            OneConv(),
            lambda logits, label: {'ce': logits[0].mean() * 0},
            [term],
            teacher=lambda images: (paddle.ones([1, 2, 4, 4]), {}),
        )

    model = make_model()
    model.train()
    optimizer = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    losses = model({'img': paddle.ones([1, 3, 4, 4]), 'label': paddle.zeros([1, 4, 4], 'int64')}, 1)
    paddle.add_n(list(losses.values())).backward()
    optimizer.step()
    state = model.auxiliary.state_dict()
    assert 'losses.0.scale' in state and float(state['losses.0.scale']) != 1.0
    resumed = make_model()
    resumed.auxiliary.set_state_dict(state)
    assert float(resumed.trained_beside.losses[0].scale) == float(state['losses.0.scale'])


def test_one_type_with_several_coefs_is_refused(tmp_path, err_dir, synthetic_root):
    """paddleseg would repeat the type once per coef (five KL copies for coef [1, 2, 3, 4,
    5]); a PaddleSeg user reads the list as one weight per model output."""
    student = write_yaml(
        tmp_path / 'student.yml',
        f"""_base_: '{STUDENT_CFG}'
distill_loss:
  types: [{{type: KLDivergenceLoss}}]
  coef: [1, 2, 3, 4, 5]
""",
    )
    assert_user_error(
        run_err(err_dir, synthetic_root, TEACHER_CFG, student),
        student,
        'distill_loss: coef [1, 2, 3, 4, 5] has 5 weights for one type',
        'one weight per model output',
        'coef: [1]',
        save_dir=err_dir,
    )


def test_a_term_that_starts_after_the_last_iteration_is_refused(tmp_path, err_dir, synthetic_root):
    student = feature_config(tmp_path, extra='    align: auto\n    start_iter: 100\n')
    assert_user_error(
        run_err(err_dir, synthetic_root, TEACHER_CFG, student),
        student,
        'ChannelWiseDistillLoss(backbone.bb_2_1): start_iter 100 is not below '
        "the run's 2 iterations",
        'lower start_iter or raise --iters',
        save_dir=err_dir,
    )
