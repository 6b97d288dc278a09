"""Datasets: tfds builders, the input pipeline, splits, device augmentation.

``builders`` resolves ``config.data`` to a tfds builder (``builders.register()`` registers
faujax's, so that ``tfds.builder('synthetic_faces/bp4d', data_dir=...)`` and 'bp4d', 'disfa',
'emotionet', 'affectnet', 'aff_wild2', 'raf_ml', 'raf_db', 'jaffe' work), ``dataset_info`` holds
``config.data`` and the label space, ``input_pipeline`` the tf.data iterators, ``augment`` the
on-device preprocessing. Importing this package imports none of them.
"""
