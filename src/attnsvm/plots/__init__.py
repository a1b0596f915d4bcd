"""Figures (matplotlib, PNG and PDF, sized for a paper column). One module per paper, shared pieces and the
one attnsvm figure style in :mod:`attnsvm.plots.common`. Importing this package changes no global
matplotlib state."""

from .common import PALETTE, band, column_figure, figure, save_figure, setup_style, style, styled

__all__ = ["PALETTE", "band", "column_figure", "figure", "save_figure", "setup_style", "style", "styled"]
