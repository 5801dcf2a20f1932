"""Moving bodies between memory, files and a storage backend.

Plain objects and files (:mod:`.objectio`), raw and ``.npy`` arrays
(:mod:`.arrayio`), bodies read range by range (:mod:`.bodyranges`), listings
(:mod:`.listing`) and progress reporting (:mod:`.progress`).
"""
