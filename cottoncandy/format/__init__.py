"""The storage format shared with cottoncandy 0.4.0, both ways: what bytes and metadata mean.

Array metadata (:mod:`.metadata`), what a ``compression`` value means
(:mod:`.compression`), the codecs (:mod:`.codecs` picks one of
:mod:`.compressors`, built on :mod:`.codecbase`; gzip libraries in
:mod:`.gzipcodec`), raw-array bodies (:mod:`.arrays`), ``.npy`` headers
(:mod:`.npyheader`), the manifests of dask and sparse arrays
(:mod:`.manifests`), chunk grid arithmetic (:mod:`.chunks`) and sparse
matrices from their parts (:mod:`.sparse`). No I/O: this layer never talks to
a backend, and the backends never import it.
"""
