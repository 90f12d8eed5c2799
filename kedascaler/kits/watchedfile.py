"""Small files that change while the scaler runs: tokens and certificates, re-read when they change.

A projected ServiceAccount token is rotated by the kubelet (an atomic symlink swap), a cert-manager
certificate is renewed in place. `WatchedFile.read()` stats the file on each call (a few microseconds) and
reads it again only when its inode, size or mtime changed. A read that fails after a good one keeps the last
good contents and logs the cause once; the first read fails loudly, so a wrong path stops the start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("kedascaler.kits.watchedfile")

MAX_FILE_BYTES = 1 << 20  # a token or a PEM bundle; anything larger is a wrong path


class WatchedFile:
    """A small file's contents, re-read when it changes; `what` names it in messages ("bearer token file")."""

    def __init__(self, path: str | Path, *, what: str = "file", check_every: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`check_every`: seconds between two stats (0: every call)."""
        self.path = Path(path)
        self.what = what
        self._check_every = check_every
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._data: bytes | None = None
        self._checked_at = -float("inf")
        self._failing: str | None = None
        self.reloads = 0  # how many times the contents were read (1 after the first read)

    def read(self) -> bytes:
        """The current contents. OSError/ValueError (naming the file) when it was never readable."""
        with self._lock:
            now = self._clock()
            if self._data is not None and now - self._checked_at < self._check_every:
                return self._data
            self._checked_at = now
            try:
                st = os.stat(self.path)
                stamp = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
                if stamp != self._stamp or self._data is None:
                    data = self._load(st.st_size)
                    self._data, self._stamp = data, stamp
                    self.reloads += 1
                    if self.reloads > 1:
                        log.info("%s %s changed: re-read", self.what, self.path)
                self._failing = None
            except (OSError, ValueError) as exc:
                why = f"cannot read {self.what} {self.path}: {getattr(exc, 'strerror', None) or exc}"
                if self._data is None:
                    raise ValueError(why) from None
                if self._failing != why:
                    self._failing = why
                    log.warning("%s; keeping the contents read before", why)
            return self._data

    def _load(self, size: int) -> bytes:
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{size} bytes, more than the {MAX_FILE_BYTES} a {self.what} may have")
        with open(self.path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]

    def changed_since(self, reloads: int) -> bool:
        """Whether the contents were re-read since the caller saw `reloads` (after a read())."""
        return self.reloads != reloads


class TokenFile(WatchedFile):
    """A bearer token in a file (surrounding whitespace stripped); an empty file is an error, never "no token"."""

    def __init__(self, path: str | Path, *, what: str = "bearer token file", check_every: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(path, what=what, check_every=check_every, clock=clock)

    def _load(self, size: int) -> bytes:
        data = super()._load(size).strip()
        if not data:
            raise ValueError("the file is empty")
        try:
            data.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("the token is not ASCII text") from None
        if any(c in data for c in b"\r\n"):
            raise ValueError("the token spans several lines")
        return data

    def token(self) -> str:
        """The current token."""
        return self.read().decode("ascii")

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"  # never the token


__all__ = ["TokenFile", "WatchedFile"]
