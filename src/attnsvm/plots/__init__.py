"""Figures (matplotlib, PNG and PDF, sized for a paper column). One module per paper, shared pieces in common."""

from .common import band, column_figure, paper_style

__all__ = ["band", "column_figure", "paper_style"]
