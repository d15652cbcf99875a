"""Small datasets written out in ImageNet's folder layout, for the demo and the tests."""
from .digits import write_digits_folder

__all__ = ['write_digits_folder']
