"""Tab-completion browser: a bucket's directories as attributes.

``browser.project.sub01_analysis_DOT_grp.image_data`` walks the keys
``project/sub01_analysis.grp/image_data``. Child names become attribute names
with cottoncandy 0.4.0's rules (see :func:`attribute_name`); ``dir()`` lists
them, so IPython and Jupyter complete them. Directories whose path contains a
group extension (``.grp``, ``.hdf5``...) are *groups* with ``keys()`` and
``load(key)``; objects carrying array metadata are *datasets* whose repr shows
size and shape.

Unlike 0.4.0: an unknown attribute raises ``AttributeError``, the local
backend works, nothing is printed, and listings happen on first use.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from typing_extensions import override

from ..backends.base import ObjectInfo, StorageBackend
from ..format.metadata import parse_shape, stored_shape
from ..transfer import arrayio, listing
from ..transfer.progress import ProgressArg
from .groups import load_stored_prefix

logger = logging.getLogger(__name__)

#: A directory whose path contains one of these is shown as a group (0.4.0's HDFEXT).
GROUP_EXTENSIONS = (".hdf", ".h5", ".hf5", ".hdf5", ".h5py", ".grp", ".arr", ".dar")
MB = 2**20


def attribute_name(name: str) -> str:
    """The attribute under which 0.4.0's browser shows the child ``name``.

    A leading digit gets ``NUM_`` in front, the last extension's dot becomes
    ``_DOT_``, and every ``-`` becomes ``_``: ``'01-a.npy'`` -> ``'NUM_01_a_DOT_npy'``.
    """
    if name[:1].isdigit():
        name = "NUM_" + name
    stem, ext = os.path.splitext(name)
    if ext:
        name = f"{stem}_DOT_{ext[1:]}"
    return name.replace("-", "_")


class BrowserNode:
    """A key or prefix of the bucket.

    Attributes are prefixed with ``_`` so that they do not hide children.

    Parameters
    ----------
    backend : StorageBackend
    path : str
    progress : bool or callable
        Progress reporting of the downloads :meth:`ObjectNode.load` makes.
    """

    def __init__(self, backend: StorageBackend, path: str, progress: ProgressArg = False):
        self._backend = backend
        self._progress = progress
        self._path = path.strip("/")

    @property
    def _fullpath(self) -> str:
        """The key (or prefix, without trailing ``/``) this node stands for."""
        return self._path

    @property
    def _curdir(self) -> str:
        return self._path.rsplit("/", 1)[-1]

    @property
    def _bucket(self) -> str | None:
        return self._backend.bucket


class Directory(BrowserNode):
    """A prefix: children are attributes (see :func:`attribute_name`)."""

    def __init__(self, backend: StorageBackend, path: str, progress: ProgressArg = False):
        super().__init__(backend, path, progress)
        self._cache: dict[str, tuple[str, bool]] | None = None

    @property
    def _children(self) -> dict[str, tuple[str, bool]]:
        """Attribute name -> (real name, is_directory), listed on first use."""
        if self._cache is None:
            children: dict[str, tuple[str, bool]] = {}
            base = len(self._path) + 1 if self._path else 0
            for entry in listing.list_level(self._backend, self._path):
                real, is_dir = entry[base:].rstrip("/"), entry.endswith("/")
                if not real:
                    continue
                attr = attribute_name(real)
                previous = children.get(attr)
                if previous is None or (previous[0] == real and is_dir):  # a prefix wins over an object
                    children[attr] = (real, is_dir)
                elif previous[0] != real:
                    logger.debug("browser: %r and %r both map to %s; keeping the first", previous[0], real, attr)
            self._cache = children
        return self._cache

    def _child(self, real: str, is_dir: bool) -> BrowserNode:
        path = f"{self._path}/{real}" if self._path else real
        return make_node(self._backend, path, is_dir, self._progress)

    def __getattr__(self, attr: str) -> BrowserNode:
        if attr.startswith("__") or attr in ("_cache", "_path", "_backend", "_progress"):
            raise AttributeError(attr)
        children = self._children
        if attr in children:
            return self._child(*children[attr])
        for real, is_dir in children.values():  # the real name works too: getattr(b, 'a.grp')
            if real == attr:
                return self._child(real, is_dir)
        raise AttributeError(f"{self._path or '<bucket root>'!s} has no child {attr!r}")

    def __getitem__(self, name: str) -> BrowserNode:
        """A child by attribute name or real name."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    @override
    def __dir__(self) -> list[str]:
        return sorted(self._children)

    def __len__(self) -> int:
        return len(self._children)

    def _ls(self) -> list[str]:
        """Sorted attribute names of the children."""
        return sorted(self._children)

    def _glob(self, pattern: str | None = None) -> list[str]:
        """Sorted keys of every object below this directory, or those matching ``pattern`` (relative)."""
        if pattern is None:
            return [info.key for info in listing.iter_tree(self._backend, self._path)]
        return listing.glob(self._backend, f"{self._path}/{pattern}" if self._path else pattern)

    @override
    def __repr__(self) -> str:
        return f"cottoncandy-path <bucket:{self._bucket}> {self._curdir}"


class Group(Directory):
    """A directory under a group extension (``.grp``...): ``keys()`` and ``load(key)``."""

    @override
    def __dir__(self) -> list[str]:
        return ["keys", "load"] + sorted(self._children)

    def keys(self) -> list[str]:
        """Sorted attribute names of the children."""
        return sorted(self._children)

    def load(self, key: str) -> Any:
        """Download the child ``key`` (attribute or real name).

        A raw array child loads as a numpy array, a stored dask array as a lazy
        dask array, a stored sparse matrix as that matrix.

        Raises
        ------
        ValueError
            ``key`` is not a child, or is a plain sub-directory.
        """
        try:
            node = getattr(self, key)
        except AttributeError:
            raise ValueError(f"{key!r} is not one of {self.keys()}") from None
        if isinstance(node, ObjectNode):
            return node.load()
        stored = load_stored_prefix(self._backend, node._fullpath, lazy=True)
        if stored is None:
            raise ValueError(f"{node._fullpath} is a directory; choose one of {node._ls()}")
        return stored

    @override
    def __repr__(self) -> str:
        return f"<cottoncandy-group <bucket:{self._bucket}> ({self._curdir}: {len(self._children)} keys)>"


class ObjectNode(BrowserNode):
    """One object; a *dataset* when it carries array metadata."""

    def _head(self) -> ObjectInfo:
        return self._backend.head(self._path)

    def load(self) -> Any:
        """Download this object as a raw array."""
        return arrayio.download_raw(self._backend, self._path, self._progress)

    @override
    def __dir__(self) -> list[str]:
        return ["load"]

    def __len__(self) -> int:
        return 0

    @override
    def __repr__(self) -> str:
        info = self._head()
        shape_text = stored_shape(info.metadata)
        if shape_text is not None:
            shape = ",".join(str(n) for n in parse_shape(shape_text, self._path))
            return f"cottoncandy-dataset <bucket:{self._bucket} [{info.size / MB:0.01f}MB:shape=({shape})]>"
        return f"cottoncandy-file <bucket:{self._bucket}> [{info.size / MB:0.01f}MB]"


def make_node(backend: StorageBackend, path: str, is_dir: bool, progress: ProgressArg = False) -> BrowserNode:
    """The node for ``path``: a group, a directory or an object."""
    if not is_dir:
        return ObjectNode(backend, path, progress)
    if any(ext in path for ext in GROUP_EXTENSIONS):
        return Group(backend, path, progress)
    return Directory(backend, path, progress)


def make_browser(backend: StorageBackend, path: str = "", progress: ProgressArg = False) -> BrowserNode:
    """A browser rooted at ``path`` (``''``: the bucket root).

    Parameters
    ----------
    backend : StorageBackend
    path : str
        A prefix, or the key of one object.
    progress : bool or callable
        Progress reporting of downloads (``True``: a tqdm bar).
    """
    path = path.strip("/")
    if path and not listing.is_prefix(backend, path) and listing.exists_object(backend, path):
        return ObjectNode(backend, path, progress)
    return make_node(backend, path, True, progress)
