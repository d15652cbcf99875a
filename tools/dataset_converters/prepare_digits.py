"""Write scikit-learn's digits as an ImageNet-style folder: python tools/dataset_converters/prepare_digits.py OUT."""
import argparse

from mmdynamixer.datasets import write_digits_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out', help='output folder (train/ and val/ are written inside)')
    parser.add_argument('--image-size', type=int, default=56)
    parser.add_argument('--val-fraction', type=float, default=0.2)
    args = parser.parse_args()
    counts = write_digits_folder(args.out, args.image_size, args.val_fraction)
    print(f'wrote {counts["train"]} training and {counts["val"]} held-out images under {args.out}')


if __name__ == '__main__':
    main()
