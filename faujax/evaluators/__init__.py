"""Extra evaluations of a finished run: figures and metrics that belong to one model or task.

big_vision's ``config.evals`` is the model: an evaluator is a module, named by its import path,
with a function ``evaluate(context) -> {name: value or file path}`` (this package holds faujax's:
``emotion_gcn_figures``, ``svml_rgcn_relations``, ``landmark_error``). A model lists the evaluators
it comes with in its module's ``EVALUATORS`` (``faujax.models.evaluators``: Emotion-GCN's
figures, SVML-RGCN's relations, MGRR-Net's landmark error), a config may add more
(``config.evals``), and the training loop runs them all after the test evaluation, without the
shared code naming a model. Their results are printed and stored in ``results.json``
(``evals``).

The ``Context`` is all an evaluator reads: the run's directory, the trained model, the label
space, the task's accumulated test arrays, and ``outputs(keys)``, which runs the model in eval
mode over the evaluated split and returns the named model outputs and preprocessed batch
entries (``batch/<key>``), concatenated over the split's examples.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Sequence


@dataclasses.dataclass
class Context:
  """What an evaluator reads (see the module docstring)."""
  workdir: str
  model: Any
  info: Any
  arrays: dict[str, Any]
  outputs: Callable[[Sequence[str]], dict[str, Any]]


def run(names: Sequence[str], context: Context) -> dict[str, Any]:
  """Every evaluator of ``names`` on ``context``; their results merged (later names win).

  Raises:
    ValueError: an evaluator module that cannot be imported or has no ``evaluate``.
  """
  results: dict[str, Any] = {}
  for name in names:
    try:
      module = importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f'evaluator {name!r} (config.evals or the model\'s EVALUATORS) cannot be '
                       f'imported: {e}') from None
    if not callable(getattr(module, 'evaluate', None)):
      raise ValueError(f'evaluator {name!r} has no evaluate(context) function.')
    results.update(module.evaluate(context))
  return results
