"""PaddleSeg's optic disc folder layout: names, checks, and a safe output folder.

<root>/JPEGImages/*.jpg      RGB fundus photographs
<root>/Annotations/*.png     single-channel uint8 labels, 0 = background, 1 = optic disc
<root>/train_list.txt        lines "JPEGImages/x.jpg Annotations/x.png"
<root>/val_list.txt
<root>/test_list.txt
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from paddleseg_ext.errors import UserInputError


def list_file(root, mode):
    """The list file of a mode ('train', 'val', 'test') under root: PaddleSeg's and
    PaddleClas's <root>/<mode>_list.txt."""
    return os.path.join(root, f'{mode}_list.txt')


IMAGE_DIR = 'JPEGImages'
LABEL_DIR = 'Annotations'
LIST_FILES = tuple(list_file('', mode) for mode in ('train', 'val', 'test'))
LAYOUT_ENTRIES = (IMAGE_DIR, LABEL_DIR) + LIST_FILES
DEFAULT_OUT = os.path.join('data', 'optic_disc_seg')


class PrepareDataError(UserInputError):
    """A problem the user can fix while preparing data; tools/prepare_data.py prints one line."""


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output path that is a file, or a non-empty folder unless force."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareDataError(
            f'{out_dir}: output path exists and is not a folder; choose another --out'
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise PrepareDataError(
            f'{out_dir}: output folder exists and is not empty; '
            'pass --force to replace its data set or choose another --out'
        )


def prepare_out_dir(out_dir: Path, force: bool, entries=LAYOUT_ENTRIES) -> None:
    """Create out_dir after check_out_dir; with force, remove the named entries that are about to be written."""
    check_out_dir(out_dir, force)
    if out_dir.is_dir():
        # Only what this tool writes is removed, so a mistaken --out cannot wipe unrelated files.
        for name in entries:
            entry = out_dir / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def layout_problems(root: Path) -> list[str]:
    """Describe what is missing from the PaddleSeg layout under root (empty list: all good)."""
    problems = [f'missing {name}/' for name in (IMAGE_DIR, LABEL_DIR) if not (root / name).is_dir()]
    problems += [f'missing {name}' for name in LIST_FILES if not (root / name).is_file()]
    if problems:
        return problems
    for list_name in LIST_FILES:
        lines = (root / list_name).read_text(encoding='utf-8').splitlines()
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                problems.append(f"{list_name} line {line_no} is not 'image label': {line!r}")
            else:
                problems += [
                    f'{list_name} line {line_no} names missing file {rel}'
                    for rel in parts
                    if not (root / rel).is_file()
                ]
    if not (root / LIST_FILES[0]).read_text(encoding='utf-8').strip():
        problems.append(f'{LIST_FILES[0]} is empty')
    return problems


# ---------------------------------------------------------------------------
# --from_zip
