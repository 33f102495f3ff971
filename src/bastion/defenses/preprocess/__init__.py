"""Preprocessing defenses: steps applied to inputs before the model, and their adaptive evaluation.

Steps (scikit-learn style, ``fit`` returns self, ``get_params`` for the evidence): bit-depth
reduction, median filter, JPEG compression, Gaussian blur, Gaussian noise, random resize-and-pad.
``PreprocessedClassifier`` puts them in front of a classifier; its ``adaptive()`` view gives the
BPDA/EOT gradients an adaptive attacker uses. ``parse_preprocess("bits:4,median:3")`` builds steps
from a spec string.
"""

from bastion.defenses.preprocess.adaptive import EOT_FIRST_DRAW, AdaptiveView, bpda
from bastion.defenses.preprocess.base import ImagePreprocessor, Preprocessor, content_keys
from bastion.defenses.preprocess.blur import GaussianBlur
from bastion.defenses.preprocess.classifier import PreprocessedClassifier
from bastion.defenses.preprocess.jpeg import JpegCompression
from bastion.defenses.preprocess.median import MedianFilter
from bastion.defenses.preprocess.noise import GaussianNoise
from bastion.defenses.preprocess.resize import RandomResizePad
from bastion.defenses.preprocess.spec import PREPROCESSORS, format_spec, parse_preprocess, valid_steps
from bastion.defenses.preprocess.squeeze import BitDepthReduction

__all__ = [
    "EOT_FIRST_DRAW",
    "PREPROCESSORS",
    "AdaptiveView",
    "BitDepthReduction",
    "GaussianBlur",
    "GaussianNoise",
    "ImagePreprocessor",
    "JpegCompression",
    "MedianFilter",
    "PreprocessedClassifier",
    "Preprocessor",
    "RandomResizePad",
    "bpda",
    "content_keys",
    "format_spec",
    "parse_preprocess",
    "valid_steps",
]
