"""`pretrained:` URLs: downloaded once into the cache by atomic writes (a local HTTP server
on 127.0.0.1 and file:// URLs), and the teacher weights' sha256 in the run log."""

import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
import time

import numpy as np
import pytest
from conftest import TEST_CONFIGS, data_opts, run_cli
from test_weights import write_config

from paddleseg_ext import pretrained
from paddleseg_ext.errors import UserInputError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `files` {path: bytes}; '/cut/<name>' announces more bytes than it sends,
    '/slow/<name>' sends half of them and stalls."""

    files = {}
    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        body = self.files.get(self.path.replace('/cut/', '/').replace('/slow/', '/'))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body) * (2 if '/cut/' in self.path else 1)))
        self.end_headers()
        if self.path.startswith('/slow/'):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(30)
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(base URL, {path: bytes} to serve, list of requested paths); cache in tmp_path."""
    monkeypatch.setenv('PADDLESEG_DISTILL_CACHE', str(tmp_path / 'cache'))
    _Handler.files, _Handler.requests = {}, []
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_port}', _Handler.files, _Handler.requests
    httpd.shutdown()
    httpd.server_close()


def test_url_is_downloaded_once_into_the_cache(server, tmp_path):
    base, files, requests = server
    files['/w/model.pdparams'] = b'weights bytes'
    path = pretrained.local_path(f'{base}/w/model.pdparams')
    assert path.startswith(str(tmp_path / 'cache'))
    with open(path, 'rb') as f:
        assert f.read() == b'weights bytes'
    assert pretrained.local_path(f'{base}/w/model.pdparams') == path
    assert requests == ['/w/model.pdparams']
    assert os.listdir(tmp_path / 'cache') == [os.path.basename(path)]  # no temporary left


@pytest.mark.parametrize('url_path', ['/missing.pdparams', '/cut/w.pdparams'])
def test_failed_download_leaves_no_file(server, tmp_path, url_path):
    base, files, _ = server
    files['/w.pdparams'] = b'x' * 1000
    with pytest.raises(UserInputError, match='could not be downloaded'):
        pretrained.local_path(base + url_path)
    assert os.listdir(tmp_path / 'cache') == []


def test_archive_is_unpacked_into_the_cache(server, tmp_path):
    base, files, _ = server
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        info = tarfile.TarInfo('resnet/model.pdparams')
        info.size = 7
        tar.addfile(info, io.BytesIO(b'weights'))
    files['/resnet.tar.gz'] = buffer.getvalue()
    path = pretrained.local_path(f'{base}/resnet.tar.gz')
    assert path.endswith(os.path.join('resnet', 'model.pdparams'))
    with open(path, 'rb') as f:
        assert f.read() == b'weights'
    assert [n for n in os.listdir(tmp_path / 'cache') if not n.endswith('.d')] == []


def test_teacher_from_a_file_url_and_its_sha256_in_the_run_log(
    tmp_path, synthetic_root, teacher_weights
):
    with open(teacher_weights, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    teacher_cfg = write_config(
        tmp_path / 'teacher.yml',
        os.path.join(TEST_CONFIGS, 'tiny_teacher.yml'),
        pretrained=f'file://{teacher_weights}',
    )
    save_dir = tmp_path / 'run'
    env = dict(os.environ, PADDLESEG_DISTILL_CACHE=str(tmp_path / 'cache'))
    result = run_cli(
        'distill_train.py',
        '--allow_weak_teacher',
        '--teacher_config',
        teacher_cfg,
        '--student_config',
        os.path.join(TEST_CONFIGS, 'tiny_student.yml'),
        '--iters',
        '1',
        '--save_interval',
        '1',
        '--save_dir',
        str(save_dir),
        *data_opts(synthetic_root),
        env=env,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f'teacher_weights_sha256 {digest}' in output
    with open(save_dir / 'train_log.jsonl') as f:
        header = json.loads(f.readline())
    assert header['tag'] == 'Run' and header['teacher_weights_sha256'] == digest
    cached = header['teacher_weights']
    assert cached.startswith(str(tmp_path / 'cache')) and os.path.isfile(cached)


def test_paddleseg_pretrained_tarball_loads_into_its_backbone(server, tmp_path):
    """A tarball in paddleseg's layout (<name>/model.pdparams, written by paddle 2.0's
    save) from a URL loads into the backbone as before: one download, values equal."""
    from paddle.framework.io import _legacy_save
    from paddleseg.models.backbones import ResNet18_vd

    base, files, requests = server
    trained = ResNet18_vd()
    buffer = io.BytesIO()
    saved = tmp_path / 'model.pdparams'
    _legacy_save(trained.state_dict(), str(saved), protocol=2)
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        tar.add(str(saved), arcname='ResNet18_vd_pretrained/model.pdparams')
    files['/ResNet18_vd_pretrained.tar.gz'] = buffer.getvalue()
    fresh = ResNet18_vd()
    pretrained.load_pretrained_model(fresh, f'{base}/ResNet18_vd_pretrained.tar.gz')
    for key, value in trained.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), key)
    assert requests == ['/ResNet18_vd_pretrained.tar.gz']


def test_building_the_model_without_weights_leaves_the_config_as_it_was(tmp_path):
    """The weights path comes back apart and no `pretrained:` reaches the build, while the
    caller's config keeps its own entries."""
    import copy

    from paddleseg_ext.components import build_model_without_weights
    from paddleseg_ext.config import load_config

    weights_file = tmp_path / 'teacher.pdparams'
    weights_file.write_bytes(b'not read')
    path = tmp_path / 'teacher.yml'
    path.write_text(
        f"_base_: '{os.path.join(TEST_CONFIGS, 'tiny_teacher.yml')}'\n"
        f"model: {{pretrained: '{weights_file}'}}\n"
    )
    config = load_config(str(path), required=('model',))
    before = copy.deepcopy(config.dic)
    model, weights = build_model_without_weights(config)
    assert weights == str(weights_file) and model is not None
    assert config.dic == before
