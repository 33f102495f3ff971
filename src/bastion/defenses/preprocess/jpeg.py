"""JPEG-style compression, in torch and batched.

Paper: Dziugaite, Ghahramani, Roy, "A study of the effect of JPG compression on adversarial
images", 2016; Das et al., "Keeping the Bad Guys Out", 2017. Codec: ITU-T T.81 (JPEG baseline).
Steps: scale the bounds to 0..255; for 3-channel inputs (``ycbcr=True``) convert RGB to YCbCr as
JFIF does; shift by -128; pad each plane to a multiple of 8 by repeating its last row and column;
take the orthonormal 8x8 block DCT-II; divide by the quantisation table, round, multiply back; invert
the DCT; undo the shift and colour conversion; round to 8-bit levels and scale back to the bounds.
The tables are the standard's luminance (Y, and every plane of grey or per-channel inputs) and
chrominance (Cb, Cr) tables scaled to ``quality`` as libjpeg does (``5000 / q`` below 50,
``200 - 2q`` from 50; entries clipped to 1..255). There is no chroma subsampling and no entropy
coding (lossless, so it changes nothing). Not differentiable (rounding); deterministic. Images only,
``(N, C, H, W)`` or ``(N, H, W)``. Default: quality 75.

Example:
    >>> JpegCompression(quality=50).fit()(images)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bastion.defenses.preprocess.base import Bounds, ImagePreprocessor, check_int

BLOCK = 8
# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), row-major.
LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56), (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMINANCE_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99), (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)
# JFIF RGB -> YCbCr (rows: Y, Cb, Cr); Cb and Cr are offset by 128 afterwards.
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


def quantisation_table(quality: int, base: tuple[tuple[int, ...], ...] = LUMINANCE_TABLE) -> torch.Tensor:
    """The ``(8, 8)`` table for ``quality`` in 1..100, scaled from ``base`` as libjpeg does."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = torch.floor((torch.tensor(base, dtype=torch.float64) * scale + 50) / 100)
    return table.clamp(1, 255)


def dct_matrix(size: int = BLOCK) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` ``(size, size)``: ``D @ block @ D.T`` transforms a block."""
    k = torch.arange(size, dtype=torch.float64)[:, None]
    n = torch.arange(size, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (2 * n + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


class JpegCompression(ImagePreprocessor):
    """Compress and decompress each image with JPEG's block DCT quantisation at ``quality`` (1..100)."""

    name = "jpeg"
    spec_param = "quality"
    spec_type = int
    spec_help = "jpeg:Q (quality, an integer 1..100, e.g. jpeg:75)"
    differentiable = False
    random = False

    def __init__(self, quality: int = 75, ycbcr: bool = True) -> None:
        self.quality = check_int(quality, "JPEG quality", 1, 100)
        self.ycbcr = bool(ycbcr)

    def _apply(self, x: torch.Tensor, bounds: Bounds, keys: torch.Tensor | None, draw: int) -> torch.Tensor:
        low, high = bounds
        images = x if x.ndim == 4 else x[:, None]
        colour = self.ycbcr and images.shape[1] == 3
        pixels = (images.to(torch.float64) - low) / (high - low) * 255.0
        if colour:
            pixels = _to_ycbcr(pixels)
        pixels = self._quantise_blocks(pixels - 128.0, colour) + 128.0
        if colour:
            pixels = _to_rgb(pixels)
        decoded = torch.round(pixels.clamp(0.0, 255.0)) / 255.0 * (high - low) + low
        return decoded.to(x.dtype).reshape(x.shape)

    def _tables(self, channels: int, colour: bool, device: torch.device) -> torch.Tensor:
        """``(C, 1, 1, 8, 8)``: luminance for every plane, chrominance for Cb and Cr of colour input."""
        luminance = quantisation_table(self.quality, LUMINANCE_TABLE)
        chrominance = quantisation_table(self.quality, CHROMINANCE_TABLE)
        tables = [chrominance if colour and channel > 0 else luminance for channel in range(channels)]
        return torch.stack(tables)[:, None, None].to(device)

    def _quantise_blocks(self, planes: torch.Tensor, colour: bool) -> torch.Tensor:
        """Block DCT, quantise, inverse DCT of ``(N, C, H, W)`` level-shifted planes."""
        n, channels, height, width = planes.shape
        pad_h, pad_w = -height % BLOCK, -width % BLOCK
        if pad_h or pad_w:
            planes = F.pad(planes, (0, pad_w, 0, pad_h), mode="replicate")
        rows, cols = planes.shape[2] // BLOCK, planes.shape[3] // BLOCK
        blocks = planes.reshape(n, channels, rows, BLOCK, cols, BLOCK).permute(0, 1, 2, 4, 3, 5)
        dct = dct_matrix().to(planes.device)
        table = self._tables(channels, colour, planes.device)
        coefficients = dct @ blocks @ dct.T
        restored = dct.T @ (torch.round(coefficients / table) * table) @ dct
        planes = restored.permute(0, 1, 2, 4, 3, 5).reshape(n, channels, rows * BLOCK, cols * BLOCK)
        return planes[:, :, :height, :width]


def _to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in 0..255 -> JFIF YCbCr in 0..255."""
    matrix = torch.tensor(_RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("oc,nchw->nohw", matrix, rgb) + _chroma_offset(rgb)


def _to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_to_ycbcr`."""
    inverse = torch.linalg.inv(torch.tensor(_RGB_TO_YCBCR, dtype=ycbcr.dtype, device=ycbcr.device))
    return torch.einsum("oc,nchw->nohw", inverse, ycbcr - _chroma_offset(ycbcr))


def _chroma_offset(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([0.0, 128.0, 128.0], dtype=like.dtype, device=like.device).reshape(1, 3, 1, 1)
