"""Unpacking PaddleSeg's real optic_disc_seg.zip into the layout (tools/prepare_data.py --from_zip)."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from paddleseg_ext.datasets.layout import (
    IMAGE_DIR,
    LAYOUT_ENTRIES,
    LIST_FILES,
    PrepareDataError,
    check_out_dir,
    layout_problems,
    prepare_out_dir,
)

ZIP_URL = 'https://paddleseg.bj.bcebos.com/dataset/optic_disc_seg.zip'


def _find_dataset_prefix(names: list[str]) -> str | None:
    """Folder prefix (e.g. 'optic_disc_seg/' or '') of the shallowest train_list.txt in the archive."""
    candidates = [
        n for n in names if n.rsplit('/', 1)[-1] == LIST_FILES[0] and not n.startswith('__MACOSX/')
    ]
    if not candidates:
        return None
    shallowest = min(candidates, key=lambda n: (n.count('/'), n))
    return shallowest[: -len(LIST_FILES[0])]


def unpack_zip(zip_path: Path, out_dir: Path, force: bool = False) -> int:
    """Unpack PaddleSeg's optic_disc_seg.zip (any top folder) into out_dir; return the image count."""
    fix = f"pass PaddleSeg's optic_disc_seg.zip ({ZIP_URL}) or use --synthetic N --seed S"
    if not zip_path.exists():
        raise PrepareDataError(f'{zip_path}: zip file not found; {fix}')
    if not zip_path.is_file():
        raise PrepareDataError(f'{zip_path}: is not a file; {fix}')
    check_out_dir(out_dir, force)  # before unpacking, so that a refused run costs nothing
    try:
        with zipfile.ZipFile(zip_path) as archive:
            prefix = _find_dataset_prefix(archive.namelist())
            if prefix is None:
                raise PrepareDataError(
                    f'{zip_path}: no {LIST_FILES[0]} inside the archive, '
                    f'so it is not the optic-disc data set; {fix}'
                )
            # Unpack next to the output, check, then move in: a bad archive leaves out_dir untouched.
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix='.prepare_data-', dir=out_dir.parent))
            try:
                _extract_under_prefix(archive, prefix, staging, zip_path)
                problems = layout_problems(staging)
                if problems:
                    shown = '; '.join(problems[:3]) + (
                        f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''
                    )
                    raise PrepareDataError(
                        f"{zip_path}: wrong layout under '{prefix or '/'}': {shown}; {fix}"
                    )
                staged = sorted(entry.name for entry in staging.iterdir())
                prepare_out_dir(out_dir, force, entries=set(LAYOUT_ENTRIES) | set(staged))
                for name in staged:
                    shutil.move(str(staging / name), str(out_dir / name))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise PrepareDataError(
            f'{zip_path}: cannot unpack ({err}); download the zip again or {fix}'
        ) from err
    return sum(1 for _ in (out_dir / IMAGE_DIR).iterdir())


def _extract_under_prefix(
    archive: zipfile.ZipFile, prefix: str, dest: Path, zip_path: Path
) -> None:
    """Write the members below prefix into dest with the prefix stripped, refusing paths that escape dest."""
    for info in archive.infolist():
        if not info.filename.startswith(prefix) or info.filename.startswith('__MACOSX/'):
            continue
        relative = info.filename[len(prefix) :]
        parts = [p for p in relative.split('/') if p]
        if not parts:
            continue
        if relative.startswith('/') or '..' in parts or ':' in parts[0]:
            raise PrepareDataError(
                f'{zip_path}: unsafe member path {info.filename!r}; use a trusted archive'
            )
        target = dest.joinpath(*parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, 'wb') as dst:
            shutil.copyfileobj(src, dst)


# ---------------------------------------------------------------------------
