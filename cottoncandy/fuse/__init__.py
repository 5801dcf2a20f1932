"""The FUSE mount: a bucket shown as a read-only file system of ``.npy`` files.

Nothing here is imported by the core package. ``mfusepy`` is imported only by
:mod:`cottoncandy.fuse.binding`, and only when a mount is made, so the read
path and the tree can be used (and tested) without libfuse.
"""
