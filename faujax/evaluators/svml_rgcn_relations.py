"""Evaluator: SVML-RGCN's relations of a finished run (eq. 3-4; drawn and saved by
``faujax.models.svml_rgcn_figures``)."""

from __future__ import annotations

from typing import Any

from faujax.models import svml_rgcn_figures


def evaluate(context: Any) -> dict[str, str]:
  """Writes the relations figure and arrays; returns their paths."""
  return svml_rgcn_figures.write_figures(context.workdir, context.model)
