"""Prepare the optic-disc segmentation data set in PaddleSeg's layout.

``--from_zip PATH`` unpacks PaddleSeg's real ``optic_disc_seg.zip``
(https://paddleseg.bj.bcebos.com/dataset/optic_disc_seg.zip).
``--synthetic N --seed S`` draws N fundus-like images instead, for machines
without the download (paddleseg_ext/datasets/synthetic.py says how they are made).

Examples::

    python tools/prepare_data.py --from_zip ~/Downloads/optic_disc_seg.zip
    python tools/prepare_data.py --synthetic 200 --seed 0 --out data/optic_disc_seg
"""
import argparse
import time
from pathlib import Path

from paddleseg_ext.datasets.layout import DEFAULT_OUT, PrepareDataError
from paddleseg_ext.datasets.optic_disc_zip import unpack_zip
from paddleseg_ext.datasets.synthetic import make_synthetic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare_data.py",
        description="Unpack PaddleSeg's optic_disc_seg.zip or write a synthetic look-alike.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from_zip", metavar="PATH", type=Path, help="path to optic_disc_seg.zip")
    source.add_argument("--synthetic", metavar="N", type=int, help="number of synthetic images to write")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT),
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true",
                        help="replace the data set in a non-empty output folder")
    parser.add_argument("--seed", type=int, help="random seed, required with --synthetic")
    parser.add_argument("--val_fraction", type=float, default=0.2,
                        help="share of synthetic images in val/test (default: 0.2)")
    parser.add_argument("--min_size", type=int, default=96, help="smallest synthetic side (default: 96)")
    parser.add_argument("--max_size", type=int, default=160, help="largest synthetic side (default: 160)")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.from_zip is not None:
            n_images = unpack_zip(args.from_zip, args.out, args.force)
            print(f"unpacked {n_images} images from {args.from_zip} to {args.out} "
                  f"in {time.perf_counter() - started:.1f} s")
        else:
            if args.seed is None:
                parser.error("--synthetic needs --seed S")
            counts = make_synthetic(args.out, args.synthetic, args.seed, args.val_fraction,
                                    args.min_size, args.max_size, force=args.force)
            print(f"wrote {counts['n']} synthetic images (train {counts['train']}, val/test {counts['val']}, "
                  f"seed {args.seed}) to {args.out} in {time.perf_counter() - started:.1f} s")
    except PrepareDataError as err:
        raise SystemExit(f"prepare_data: error: {err}") from None


if __name__ == "__main__":
    main()
