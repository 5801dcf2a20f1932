"""Where ``cottoncandy-mount`` logs, and how much.

- In the foreground: stderr (the journal, when a systemd unit runs it).
- In the background (the default): one file per mountpoint,
  ``$XDG_STATE_HOME/cottoncandy/<mountpoint>.log`` (``~/.local/state/...``
  without ``XDG_STATE_HOME``), rotated at :data:`LOG_MAX_BYTES` with
  :data:`LOG_BACKUPS` old files kept, so a mount that runs for months stays
  bounded. The command prints the path once when the mount is live. The mount
  process's own stdout and stderr (libfuse's messages, a crash's traceback)
  point at the same file, also after a rotation.
- ``--log-file PATH`` in either mode: appended to, and reopened when moved
  away (``logrotate``).

Levels: warnings and errors, plus cottoncandy's own INFO lines (mounted,
unmounted, a body resumed after a broken connection); ``--debug`` adds
cottoncandy's DEBUG lines (its decisions); ``--debug-wire`` turns on DEBUG
for every library (botocore's requests and responses, urllib3, mfusepy).
Every record is masked by :mod:`cottoncandy.backends.s3logs`'s filter,
whatever logger made it, so no mode shows credentials.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path
from typing import BinaryIO

from typing_extensions import override

LOG_MAX_BYTES = 10 << 20
LOG_BACKUPS = 2
#: ``{prog}`` is the program's name.
LOG_FORMAT = "%(asctime)s {prog}[%(process)d] %(levelname)s %(name)s: %(message)s"

_installed: list[logging.Handler] = []


def default_log_path(mountpoint: str) -> Path:
    """The background mount's log file: ``$XDG_STATE_HOME/cottoncandy/<mountpoint>.log``.

    ``/mnt/cc`` gives ``mnt-cc.log``.
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    name = re.sub(r"[^\w.]+", "-", os.path.abspath(mountpoint).strip("/")) or "root"
    return Path(state) / "cottoncandy" / f"{name}.log"


def open_for_child(path: str | Path) -> BinaryIO:
    """Open (creating its directory) the file the background process's stdout and stderr go to."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")  # noqa: SIM115 - handed to subprocess.Popen, closed by the caller


class RotatingStdioLog(logging.handlers.RotatingFileHandler):
    """A size-rotated log file that also holds the process's fds 1 and 2.

    Without this, messages written to stderr by C code (libfuse) would go on
    into the renamed file after a rotation, and then into a deleted one.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        self._hold_stdio()

    @override
    def doRollover(self) -> None:
        super().doRollover()
        self._hold_stdio()

    def _hold_stdio(self) -> None:
        if self.stream is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)


def setup_logging(prog: str, debug: bool, debug_wire: bool, log_file: str | None,
                  background_file: Path | None) -> None:
    """Install the mount's one log handler (replacing an earlier one of ours).

    Parameters
    ----------
    prog : str
        The program's name, in every line and in the message when the file
        cannot be opened.
    debug, debug_wire : bool
        ``--debug`` and ``--debug-wire``.
    log_file : str, optional
        ``--log-file``.
    background_file : Path, optional
        The rotated default file, for the background mount process without
        ``--log-file``; ``None`` logs to stderr.
    """
    from ..backends.s3logs import protect

    handler: logging.Handler
    try:
        if log_file:
            handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        elif background_file is not None:
            handler = RotatingStdioLog(background_file)
        else:
            handler = logging.StreamHandler(sys.stderr)
    except OSError as exc:
        print(f"{prog}: cannot write the log to {log_file or background_file}: {exc.strerror}; "
              "logging to stderr", file=sys.stderr)
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT.format(prog=prog)))
    handler.addFilter(protect())  # masks known keys and credential headers in every record
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed[:] = [handler]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug_wire else logging.WARNING)
    logging.getLogger("cottoncandy").setLevel(logging.DEBUG if debug or debug_wire else logging.INFO)
