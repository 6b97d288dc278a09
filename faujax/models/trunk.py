"""The CNN trunk of a model from its ``config.model.backbone`` section.

``backbone`` is ``{'name': <faujax.backbones.ARCHS entry>, **that trunk's constructor options}``;
``faujax.models.default_config`` declares every option of the named trunk, so each can be set
on the command line (``--config.model.backbone.widths='(32, 64)'``).
"""

from __future__ import annotations

from typing import Any, Mapping

from flax import nnx

from faujax import backbones


def build(spec: Mapping[str, Any], *, dtype: Any, rngs: nnx.Rngs) -> nnx.Module:
  """``faujax.backbones.build(spec['name'], **options)``; its variables sit under 'backbone'."""
  options = dict(spec)
  name = options.pop('name')
  return backbones.build(name, dtype=dtype, rngs=rngs, **options)
