"""A home directory set up like a cottoncandy 0.4.0 user's, for the compatibility tests.

``data/options-0.4.0.cfg`` is the ``~/.config/cottoncandy/options.cfg`` that
0.4.0 writes on first import, byte for byte (made by importing 0.4.0 under an
empty HOME: ``HOME=$(mktemp -d) /work/venv040/bin/python -c 'import cottoncandy'``
from a directory without this repository). :class:`Home040` installs it and
puts keys where 0.4.0 users keep them: in that file, in ``~/.passwd-s3fs``, in
``~/.aws/credentials``, or in ``CC_*`` / ``AWS_*`` variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tests.mountutil import mount_env

OPTIONS_040 = Path(__file__).parent / "data" / "options-0.4.0.cfg"
#: Where keys can be held, from the highest precedence to the lowest (arguments are not a place).
PLACES = ("cc_env", "config_file", "passwd_s3fs", "aws_env", "aws_credentials_file")


@dataclass
class Home040:
    """A HOME holding 0.4.0's options.cfg verbatim, and the variables set for it.

    Attributes
    ----------
    path : Path
        The home directory.
    environ : dict
        Variables set by :meth:`put_keys` (``CC_*``, ``AWS_*``), for subprocesses.
    """

    path: Path
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def options(self) -> Path:
        return self.path / ".config" / "cottoncandy" / "options.cfg"

    def install_options(self, **replace: str) -> Path:
        """Write 0.4.0's options.cfg, verbatim but for the ``name = value`` lines in ``replace``."""
        lines = OPTIONS_040.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            name = line.split("=")[0].strip()
            if name in replace:
                lines[i] = f"{name} = {replace.pop(name)}\n"
        if replace:
            raise KeyError(f"not in 0.4.0's options.cfg: {sorted(replace)}")
        self.options.parent.mkdir(parents=True, exist_ok=True)
        self.options.write_text("".join(lines))
        return self.options

    def write_passwd(self, text: str, mode: int = 0o600) -> Path:
        """Write ``~/.passwd-s3fs`` with ``mode``."""
        path = self.path / ".passwd-s3fs"
        path.write_text(text)
        path.chmod(mode)
        return path

    def put_keys(self, place: str, access_key: str, secret_key: str, endpoint_url: str | None = None) -> None:
        """Hold a key pair at ``place`` (one of :data:`PLACES`); the endpoint goes with it when given."""
        if place == "cc_env":
            self.environ.update(CC_ACCESS_KEY=access_key, CC_SECRET_KEY=secret_key)
        elif place == "config_file":
            extra = {"endpoint_url": endpoint_url} if endpoint_url else {}
            self.install_options(access_key=access_key, secret_key=secret_key, **extra)
            return
        elif place == "passwd_s3fs":
            self.write_passwd(f"{access_key}:{secret_key}\n")
        elif place == "aws_env":
            self.environ.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
        elif place == "aws_credentials_file":
            (self.path / ".aws").mkdir(exist_ok=True)
            (self.path / ".aws" / "credentials").write_text(
                f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n")
        else:
            raise ValueError(f"unknown place {place!r}")
        if endpoint_url:
            self.environ["CC_ENDPOINT_URL"] = endpoint_url

    def apply(self, monkeypatch) -> None:
        """Make this process use the home and the variables (for API tests)."""
        monkeypatch.setenv("HOME", str(self.path))
        for name, value in self.environ.items():
            monkeypatch.setenv(name, value)

    def mount_environ(self) -> dict[str, str]:
        """Environment of a ``cottoncandy-mount`` run by this user: nothing but this home and its variables."""
        env = mount_env()
        for name in ("CC_CONFIG_FILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            env.pop(name, None)
        env.update(self.environ, HOME=str(self.path), AWS_EC2_METADATA_DISABLED="true")
        return env


def make_home(root: Path) -> Home040:
    """A fresh 0.4.0 home under ``root`` with options.cfg installed verbatim."""
    home = Home040(Path(root))
    home.path.mkdir(parents=True, exist_ok=True)
    home.install_options()
    assert home.options.read_bytes() == OPTIONS_040.read_bytes()
    os.chmod(home.path, 0o700)
    return home
