"""Shipped label-node embeddings (Emotion-GCN Z) and the script that made them.

``default_minilm.npz``: the 9 Emotion-GCN node phrases embedded with all-MiniLM-L6-v2; read it
through ``faujax.models.label_embeddings.load_embeddings('default', names)``. Rebuild with
``python -m faujax.embeddings.make_default`` (needs the ``embed`` extra).
"""
