"""The notebooks in colabs/ run from top to bottom."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('name', ['quickstart.ipynb'])
def test_notebook_runs(name, tmp_path):
  path = os.path.join(REPO, 'colabs', name)
  nb = nbformat.read(path, as_version=4)
  env_backup = dict(os.environ)
  os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  os.environ['MPLBACKEND'] = 'Agg'
  try:
    NotebookClient(nb, timeout=900, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
  finally:
    os.environ.clear()
    os.environ.update(env_backup)
  outputs = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                    for o in c.get('outputs', []))
  assert 'mean F1' in outputs
