"""The architecture's rules as code: the layers' import contracts (import-linter, run by
`make lint` in CI) and imports that work in any order."""

import os
import shutil
import subprocess
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

from conftest import REPO_ROOT

LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), 'lint-imports')


def lint_imports(root):
    env = {**os.environ, 'PYTHONPATH': root}
    return subprocess.run(
        [LINT_IMPORTS, '--no-cache'], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def copy_packages(tmp_path):
    for package in ('paddleseg_ext', 'slim'):
        shutil.copytree(
            os.path.join(REPO_ROOT, package),
            tmp_path / package,
            ignore=shutil.ignore_patterns('__pycache__'),
        )
    shutil.copy(os.path.join(REPO_ROOT, 'pyproject.toml'), tmp_path)
    return str(tmp_path)


def test_the_layer_contracts_hold_on_the_code_as_it_is():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '1 kept, 0 broken' in result.stdout


def test_every_module_is_in_a_layer():
    """A module no layer names would escape the contract."""
    with open(os.path.join(REPO_ROOT, 'pyproject.toml'), 'rb') as handle:
        (contract,) = tomllib.load(handle)['tool']['importlinter']['contracts']
    layered = {name.strip() for layer in contract['layers'] for name in layer.split('|')}
    for package in ('paddleseg_ext', 'slim'):
        for entry in sorted(os.listdir(os.path.join(REPO_ROOT, package))):
            name, extension = os.path.splitext(entry)
            is_module = extension == '.py' and name != '__init__'
            if is_module or (not extension and not name.startswith(('_', '.'))):
                assert f'{package}.{name}' in layered, f'{package}.{name} is in no layer'


def test_an_upward_import_breaks_the_layer_contract(tmp_path):
    root = copy_packages(tmp_path)
    assert lint_imports(root).returncode == 0
    with open(os.path.join(root, 'paddleseg_ext', 'datasets', 'layout.py'), 'a') as module:
        module.write('\nimport paddleseg_ext.engine.trainer  # noqa: E402,F401\n')
    result = lint_imports(root)
    assert result.returncode == 1
    assert 'paddleseg_ext.datasets is not allowed to import paddleseg_ext.engine' in result.stdout
    assert 'paddleseg_ext.datasets.layout -> paddleseg_ext.engine.trainer' in result.stdout


# Writes a palette PNG label with Pillow and OpenCV and reads it back with both.
PNG_ROUND_TRIP = """
import sys, numpy as np, cv2
from PIL import Image
label = (np.arange(96 * 80).reshape(96, 80) % 3).astype(np.uint8)
image = Image.fromarray(label, mode='P')
image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
image.save(sys.argv[1] + '/pil.png')
cv2.imwrite(sys.argv[1] + '/cv2.png', label)
assert (np.asarray(Image.open(sys.argv[1] + '/pil.png')) == label).all()
assert (np.asarray(Image.open(sys.argv[1] + '/cv2.png')) == label).all()
assert (cv2.imread(sys.argv[1] + '/cv2.png', cv2.IMREAD_UNCHANGED) == label).all()
print('labels decode')
"""


def test_the_packages_import_after_paddle_and_png_labels_still_decode(tmp_path):
    for order in (
        'import paddle; import paddleseg_ext, slim.distill',
        'import slim.distill, paddle',
    ):
        result = subprocess.run(
            [sys.executable, '-c', order + '\n' + PNG_ROUND_TRIP, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (order, result.stderr[-3000:])
        assert result.stdout.strip() == 'labels decode'
