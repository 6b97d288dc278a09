"""Every notebook in colabs/ runs from top to bottom at its small settings (``SMALL = True``).

Each notebook has an entry in ``EXPECTED``: patterns its printed output must contain, chosen so
that a notebook that ran but computed nothing (no training, no metrics, no relation graph) fails.
A new notebook without an entry fails too. The notebooks' own cells also assert what they show
(label statistics against the files written, layer outputs against the equations).
"""

import glob
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'colabs', '*.ipynb')))

_NUMBER = r'-?\d+(\.\d+)?'
EXPECTED = {
    'quickstart.ipynb': [rf'mean F1 {_NUMBER}'],
    'graph_layers.ipynb': [
        r"relation summary \{'mgrr_prior_offdiag_max': 0\.[1-9]",
        r"'au_gcn_edges': [1-9]\d*",
        r"'svml_positive': [1-9]\d*, 'svml_negative': [1-9]\d*",
        r'd\(top-K graph\)/dx = 0\.0',
        r'ensemble output \(3, '],
    'macg.ipynb': [
        rf'mean F1 {_NUMBER} mean AUC {_NUMBER} \| all-positive F1 {_NUMBER}',
        r'restored step [1-9]\d*',
        r'nodes \(\d+, 12, \d+\) K = 4 edges per node',
        rf'baseline row \(no MAFG, no CCFG\) +mean F1 +{_NUMBER}'],
    'emotion_gcn.ipynb': [
        rf'mean class accuracy {_NUMBER} \| majority class {_NUMBER} \| CCC valence {_NUMBER}',
        r'restored step [1-9]\d* \| W \(9, \d+\)',
        rf'linear \+ CCC \(iii\) +{_NUMBER}'],
    'au_gcn.ipynb': [
        r'19 ROI nodes of \d+ x \d+ px',
        r'ROI graph: [1-9]\d* nonzero of 361',
        rf'mean F1 {_NUMBER} mean AUC {_NUMBER} \| all-positive F1 {_NUMBER}',
        r'restored step [1-9]\d* from \S+/checkpoints/[1-9]\d*',
        r'after stage 2 +mean squared reconstruction error on this face \d\.\d+',
        rf'AU-Net row \(no GCN, no face, BCE\) +mean F1 +{_NUMBER}'],
    'mgrr_net.ipynb': [
        rf'mean F1 {_NUMBER} mean AUC {_NUMBER} \| all-positive F1 {_NUMBER}',
        r'restored step [1-9]\d*',
        r'landmark error on [1-9]\d* test faces: \d+\.\d % of the inter-ocular distance',
        r'\|A - prior\|: mean \d\.\d+, max \d\.\d+ after [1-9]\d* steps',
        rf'baseline row \(no D_G\) +mean F1 +{_NUMBER}'],
    'svml_rgcn.ipynb': [
        r'visual nodes \S+visual_nodes\.npz \(\d+-d, step [1-9]\d*\)',
        r't1 = \S+, t2 = \S+: [1-9]\d* positive and [1-9]\d* negative relations',
        rf'average precision {_NUMBER} micro F1 {_NUMBER} macro AUC {_NUMBER}',
        r'restored step [1-9]\d* \| W_C \(6, \d+\)',
        rf'linear classifier \(baseline row\)( +{_NUMBER}){{9}}'],
    'your_data.ipynb': [
        r'bp4d official au ',
        r'label statistics match the csv files',
        r'fold 3: train \[',
        r'affectnet 7class expression ',
        rf'mean F1 {_NUMBER} \| all-positive F1 {_NUMBER}'],
    'inference.ipynb': [
        rf'test mean F1 {_NUMBER} \| all-positive F1 {_NUMBER}',
        r'restored \S+/best/[1-9]\d* \| model baseline',
        r'8 rows x 170 columns, success \[1(, 1){7}\]',
        r"columns: \['input', 'frame', 'timestamp', 'face_id', 'face_x', 'face_y', 'face_w', "
        r"'face_h', 'confidence', 'success', 'x_0'",
        r'30 frames, timestamps 0\.0 \.\. 2\.9 s, mean AU probability 0\.\d+',
        r'mean F1 of the AU decisions on these 38 new faces: 0\.\d+ \(all AUs present: 0\.\d+\)',
        r'detected: success 1, .* landmarks off the rendered ones by [0-3]\.\d+ px',
        r'batch 1 vs 32: 8 rows, max \|AU_p difference\| \d\.\de[-+]\d+, same AU decisions: True',
        r'blank\.png: success 0, AU01_p nan',
        r'results\.csv: 38 rows, 38 faces, 0 frames without a face\. \(exit status 0',
        r'max \|AU_p difference\| from the Predictor (0\.0e\+00|\d\.\de-(0[6-9]|[1-9]\d))'],
}


def _outputs(nb) -> str:
  texts = []
  for cell in nb.cells:
    if cell.cell_type != 'code':
      continue
    for out in cell.get('outputs', []):
      texts.append(out.get('text', '') or out.get('data', {}).get('text/plain', ''))
  return ''.join(texts)


def test_every_notebook_has_expectations():
  assert NOTEBOOKS and set(NOTEBOOKS) == set(EXPECTED), (NOTEBOOKS, sorted(EXPECTED))


def test_committed_notebooks_are_stripped():
  for name in NOTEBOOKS:
    nb = nbformat.read(os.path.join(REPO, 'colabs', name), as_version=4)
    for cell in nb.cells:
      if cell.cell_type == 'code':
        assert not cell.get('outputs') and cell.get('execution_count') is None, name


@pytest.mark.slow
@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_runs(name, tmp_path):
  path = os.path.join(REPO, 'colabs', name)
  nb = nbformat.read(path, as_version=4)
  env_backup = dict(os.environ)
  os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  os.environ['MPLBACKEND'] = 'Agg'
  os.environ['FAUJAX_NOTEBOOK_TEST'] = '1'  # the install cells skip
  os.environ['TMPDIR'] = str(tmp_path)      # the notebooks' temporary workdirs
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    NotebookClient(nb, timeout=600, kernel_name='python3',
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
  finally:
    os.environ.clear()
    os.environ.update(env_backup)
  outputs = _outputs(nb)
  for pattern in EXPECTED.get(name, ['(no expectations declared for this notebook)']):
    assert re.search(pattern, outputs), f'{name}: no output matches {pattern!r}'
