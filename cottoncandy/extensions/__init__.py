"""Formats and views built on raw arrays: dask arrays, sparse matrices, groups, the browser.

:mod:`.dask_arrays` with its lazy sources (:mod:`.lazy_sources`),
:mod:`.sparse_arrays`, :mod:`.groups` (``dict2cloud``/``cloud2dict``) and
:mod:`.browser`; the Interface delegates to them.
"""
