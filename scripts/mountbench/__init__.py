"""The sections of ``scripts/bench_mount.py``, one module each, and what they share.

``common`` (sizes, the run's server and bucket, uploads), ``baselines`` (raw
boto3), ``mounts`` (cottoncandy-mount, s3fs-fuse, rclone mount), ``fileops``
(the timed operations on a mount), ``runs`` (one measurement on every file
system, interleaved), ``figures`` (the table's rows); the sections: ``reads``,
``gzipped``, ``listing``, ``scale``, ``memory``.
"""
