"""The storage format shared with cottoncandy 0.4.0, both ways: what bytes and metadata mean.

Array metadata (:mod:`.metadata`), compression codecs (:mod:`.codecs`,
:mod:`.gzipcodec`), raw-array bodies (:mod:`.arrays`), ``.npy`` headers
(:mod:`.npyheader`) and the manifests of dask and sparse arrays
(:mod:`.manifests`). No I/O: this layer never talks to a backend.
"""
