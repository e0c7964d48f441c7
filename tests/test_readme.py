"""README.md's CPU quick start runs as written, and no file of the repository points outside it.

The quick start's commands are read from README.md itself: the ```bash block under the
heading '## Quick start on CPU'. So a renamed flag, config, script or path in either the
README or the code fails here. They run one after the other, unchanged, in a temporary
folder holding a symlink to each top-level entry of the repository (scripts, configs,
packages, tools): their relative outputs (data/, output/) land there, never in the
checkout. Only `python` is replaced, by this test's interpreter, with that folder on
PYTHONPATH. Nothing is scaled down: the README's sizes are what a user runs, and they are
sized to take a few minutes on a CPU.
"""

import json
import os
import re
import shlex
import subprocess
import sys

from conftest import REPO_ROOT

HEADING = '## Quick start on CPU'
# Not linked into the temporary folder: what the commands write, and local state.
LOCAL = {'.git', 'data', 'output'}


def quick_start_commands(readme):
    """The commands of the first ```bash block after HEADING, continuation lines joined,
    comments dropped, each as an argv list."""
    section = readme.split(f'\n{HEADING}\n', 1)[1].split('\n## ', 1)[0]
    block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    commands = []
    for line in block.replace('\\\n', ' ').splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv)
    return commands


def test_quick_start_block_is_found_and_covers_the_whole_path():
    with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        commands = quick_start_commands(f.read())
    scripts = [argv[1] for argv in commands]
    assert all(argv[0] == 'python' for argv in commands), commands
    for script in ('train.py', 'distill_train.py', 'val.py', 'tools/export.py', 'tools/predict.py'):
        assert script in scripts, f'the CPU quick start lost its {script} step'
    assert any('--images' in argv and '--masks' in argv for argv in commands)


def test_readme_cpu_quick_start_runs_as_written(tmp_path):
    with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        commands = quick_start_commands(f.read())
    for name in os.listdir(REPO_ROOT):
        if name not in LOCAL and not name.startswith('.venv'):
            os.symlink(os.path.join(REPO_ROOT, name), tmp_path / name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO_ROOT]))
    for argv in commands:
        result = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (
            f'README command failed: {shlex.join(argv)}\n' + (result.stdout + result.stderr)[-3000:]
        )
    # What the last steps promise: the metrics file and one prediction per image.
    values = {argv[i]: argv[i + 1] for argv in commands for i in range(1, len(argv) - 1)}
    with open(tmp_path / values['--json']) as f:
        assert 0.0 <= json.load(f)['miou'] <= 1.0
    images = os.listdir(tmp_path / values['--image_path'])
    masks = os.listdir(tmp_path / values['--save_dir'] / 'pseudo_color_prediction')
    assert images and len(masks) == len(images)


def tracked_files():
    listed = subprocess.run(
        ['git', 'ls-files', '-z'], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [name for name in listed.split('\0') if name]


def test_no_file_points_outside_the_repository():
    """No absolute path of a development machine and no link that leaves the checkout:
    a fresh clone has neither."""
    outside = re.compile(r'(?<![\w.])/work/|\.\./shared\b')
    link = re.compile(r'\]\(([^)\s]+)\)')
    problems = []
    for name in tracked_files():
        path = os.path.join(REPO_ROOT, name)
        if os.path.abspath(path) == os.path.abspath(__file__) or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding='utf-8') as f:
                text = f.read()
        except UnicodeDecodeError:
            continue  # binary
        problems += [f'{name}: {m.group(0)!r}' for m in outside.finditer(text)]
        if name.endswith('.md'):
            for target in link.findall(text):
                if re.match(r'[a-z]+:|#', target):
                    continue  # a URL or an anchor
                resolved = os.path.realpath(
                    os.path.join(os.path.dirname(path), target.split('#')[0])
                )
                if not resolved.startswith(os.path.realpath(REPO_ROOT) + os.sep):
                    problems.append(f'{name}: link {target!r} leaves the repository')
    assert problems == []
