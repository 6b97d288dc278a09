"""Config sections declared once, by the code that reads them.

Every part of faujax that reads a config section declares it as a frozen dataclass next to the
code that uses it (``optim.OptimConfig``, ``tasks.LossConfig``, ``config_base.TrainConfig``, ...):
the field names are the keys, the field defaults are the defaults, ``__post_init__`` checks the
ranges. ``faujax.config_base`` assembles the full default config from these declarations, so config
files write only what differs and every key the code reads can be overridden on the command line
(``--config.optim.learning_rate=1e-3``); ``read`` turns a section back into the dataclass and
rejects a key it does not declare, naming the nearest valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping, TypeVar

import ml_collections
from ml_collections import config_dict

T = TypeVar('T')


class ConfigError(ValueError):
  """A config key or value that faujax cannot run with; the message names the key."""


def _placeholder_type(annotation: Any) -> type:
  """The non-None type of an ``X | None`` annotation (for an overridable None default)."""
  if isinstance(annotation, str):
    annotation = eval(annotation, {'typing': typing})  # annotations are postponed strings
  args = [a for a in typing.get_args(annotation) if a is not type(None)]
  return args[0] if args else str


def _to_config_value(value: Any) -> Any:
  if isinstance(value, Mapping):
    return ml_collections.ConfigDict({k: _to_config_value(v) for k, v in value.items()})
  return value


def section(cls: type) -> ml_collections.ConfigDict:
  """The defaults of the dataclass ``cls`` as a ConfigDict (None defaults stay overridable)."""
  hints = typing.get_type_hints(cls)
  out = ml_collections.ConfigDict()
  for f in dataclasses.fields(cls):
    if f.default is not dataclasses.MISSING:
      default = f.default
    elif f.default_factory is not dataclasses.MISSING:
      default = f.default_factory()
    else:
      raise TypeError(f'{cls.__name__}.{f.name} has no default; config fields need one.')
    if default is None:
      out[f.name] = config_dict.placeholder(_placeholder_type(hints[f.name]))
    else:
      out[f.name] = _to_config_value(default)
  return out


def unknown_key_error(key: str, where: str, known: typing.Iterable[str]) -> ConfigError:
  """``config.<where>.<key>`` is not declared: the error names the nearest declared keys."""
  known = sorted(known)
  near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
  hint = f' Did you mean {", ".join(near)}?' if near else ''
  return ConfigError(f'config.{where}.{key} is not a key faujax reads.{hint} Valid keys: '
                     f'{", ".join(known)}.')


def to_plain(value: Any) -> Any:
  """ConfigDicts (and FieldReferences) -> plain dicts / values, recursively."""
  if isinstance(value, (ml_collections.ConfigDict, config_dict.FrozenConfigDict)):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {k: to_plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(to_plain(v) for v in value)
  return value


def read(cls: type[T], cfg: Any, where: str) -> T:
  """``cls(**cfg)``: unknown keys and failed range checks raise ConfigError naming
  ``config.<where>.<key>``."""
  values = to_plain(cfg if cfg is not None else {})
  names = {f.name for f in dataclasses.fields(cls)}
  for key in values:
    if key not in names:
      raise unknown_key_error(key, where, names)
  try:
    return cls(**values)
  except _FieldError as e:  # from ``check``: the message starts with the key
    raise ConfigError(f'config.{where}.{e}') from None
  except (ValueError, TypeError) as e:
    raise ConfigError(f'config.{where}: {e}') from None


class _FieldError(ValueError):
  pass


def check(condition: bool, key: str, value: Any, expected: str) -> None:
  """For ``__post_init__``: raises ValueError ``'<key>=<value>; expected <expected>.'``."""
  if not condition:
    raise _FieldError(f'{key}={value!r}; expected {expected}.')


def frozen_mapping(d: Mapping[str, Any]) -> types.MappingProxyType:
  """A read-only mapping, for dict-valued defaults in signatures and dataclasses."""
  return types.MappingProxyType(dict(d))
