"""Prepare data: your own images and masks in PaddleSeg's generic layout, the optic-disc
segmentation set in PaddleSeg's layout, or handwritten digits for classification.

``--images DIR --masks DIR --out DIR`` writes a folder of images and a folder of masks (same
stem, PNGs of class ids) as PaddleSeg's generic layout (YAML ``type: Dataset``: list files of
``image label`` lines), checking every pair first, and prints the classes it saw
(paddleseg_ext/datasets/folders.py).

``--from_zip PATH`` unpacks PaddleSeg's real ``optic_disc_seg.zip``
(https://paddleseg.bj.bcebos.com/dataset/optic_disc_seg.zip).
``--synthetic N --seed S`` draws N fundus-like images instead, for machines
without the download (paddleseg_ext/datasets/synthetic.py says how they are made).
``--digits`` writes scikit-learn's 1,797 real 8x8 handwritten digits as PNG files with
train/val lists in PaddleClas's format (paddleseg_ext/datasets/digits.py).

Examples::

    python tools/prepare_data.py --images my/images --masks my/masks --out data/my_dataset
    python tools/prepare_data.py --from_zip ~/Downloads/optic_disc_seg.zip
    python tools/prepare_data.py --synthetic 200 --seed 0 --out data/optic_disc_seg
    python tools/prepare_data.py --digits                       # -> data/digits
"""

import os
import time
from pathlib import Path

from paddleseg_ext.cli import ArgumentParser
from paddleseg_ext.datasets import digits
from paddleseg_ext.datasets.folders import write_from_folders
from paddleseg_ext.datasets.layout import DEFAULT_OUT, PrepareDataError
from paddleseg_ext.datasets.optic_disc_zip import unpack_zip
from paddleseg_ext.datasets.synthetic import make_synthetic


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog='prepare_data.py',
        description="Write your images and masks in PaddleSeg's generic layout, unpack "
        "PaddleSeg's optic_disc_seg.zip, write a synthetic look-alike, or write "
        "scikit-learn's handwritten digits for classification.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        '--images',
        metavar='DIR',
        type=Path,
        help='a folder of images; with --masks and --out, written as type: Dataset',
    )
    source.add_argument('--from_zip', metavar='PATH', type=Path, help='path to optic_disc_seg.zip')
    source.add_argument(
        '--synthetic', metavar='N', type=int, help='number of synthetic images to write'
    )
    source.add_argument(
        '--digits',
        action='store_true',
        help="scikit-learn's handwritten digits, split in halves stratified by class",
    )
    parser.add_argument(
        '--masks',
        metavar='DIR',
        type=Path,
        help='with --images: the masks, one PNG of class ids per image, same stem',
    )
    parser.add_argument(
        '--num_classes',
        type=int,
        help='with --images: refuse mask values >= this (default: the largest id seen + 1)',
    )
    parser.add_argument(
        '--out',
        type=Path,
        default=None,
        help=f'output folder (default: {DEFAULT_OUT}, or {digits.DEFAULT_OUT} with --digits)',
    )
    parser.add_argument(
        '--force', action='store_true', help='replace the data set in a non-empty output folder'
    )
    parser.add_argument(
        '--seed',
        type=int,
        help="random seed, required with --synthetic (with --digits, --images: the split's, "
        'default 0)',
    )
    parser.add_argument(
        '--val_fraction',
        type=float,
        default=None,
        help=f'share of images in val/test (default: 0.2, or {digits.VAL_FRACTION} with --digits)',
    )
    parser.add_argument(
        '--size',
        type=int,
        default=32,
        help='with --digits: side of the written images (default: 32)',
    )
    parser.add_argument(
        '--min_size', type=int, default=96, help='smallest synthetic side (default: 96)'
    )
    parser.add_argument(
        '--max_size', type=int, default=160, help='largest synthetic side (default: 160)'
    )
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if (args.images is None) != (args.masks is None):
        parser.error('--images and --masks go together: pass both folders')
    if args.images is not None and args.out is None:
        parser.error('--images needs --out DIR: the folder to write the data set to')
    if args.out is None:
        args.out = Path(digits.DEFAULT_OUT if args.digits else DEFAULT_OUT)
    # Each writer keeps its own default split unless --val_fraction is given.
    split = {} if args.val_fraction is None else {'val_fraction': args.val_fraction}
    try:
        if args.images is not None:
            counts = write_from_folders(
                args.images,
                args.masks,
                args.out,
                seed=args.seed or 0,
                num_classes=args.num_classes,
                force=args.force,
                **split,
            )
            print(
                f'wrote {counts["train"] + counts["val"]} images and masks (train '
                f'{counts["train"]}, val {counts["val"]}) to {args.out} in '
                f'{time.perf_counter() - started:.1f} s; the masks hold classes '
                f'{", ".join(map(str, counts["classes"]))}: set num_classes: '
                f'{counts["num_classes"]} in the config (configs/own_data/ shows the rest)'
            )
        elif args.digits:
            counts = digits.write_digits(
                args.out, args.size, seed=args.seed or 0, force=args.force, **split
            )
            print(
                f'wrote {counts["train"] + counts["val"]} digits (train {counts["train"]}, '
                f'val {counts["val"]}, {args.size}x{args.size}) to {args.out} in '
                f'{time.perf_counter() - started:.1f} s'
            )
        elif args.from_zip is not None:
            n_images = unpack_zip(args.from_zip, args.out, args.force)
            print(
                f'unpacked {n_images} images from {args.from_zip} to {args.out} '
                f'in {time.perf_counter() - started:.1f} s'
            )
        else:
            if args.seed is None:
                parser.error('--synthetic needs --seed S')
            counts = make_synthetic(
                args.out,
                args.synthetic,
                args.seed,
                min_size=args.min_size,
                max_size=args.max_size,
                force=args.force,
                workers=os.cpu_count() or 1,
                **split,
            )
            print(
                f'wrote {counts["n"]} synthetic images (train {counts["train"]}, val/test {counts["val"]}, '
                f'seed {args.seed}) to {args.out} in {time.perf_counter() - started:.1f} s'
            )
    except PrepareDataError as err:
        raise SystemExit(f'prepare_data: error: {err}') from None


if __name__ == '__main__':
    main()
