"""A small thread-safe cache: least recently used entries go beyond ``max_entries``, and, with a
``ttl``, entries older than ``ttl`` seconds are misses."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, max_entries: int, ttl: float | None = None) -> None:
        self.max_entries, self.ttl = max_entries, ttl
        self.hits = self.misses = 0
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or (self.ttl is not None and found[0] + self.ttl <= time.monotonic()):
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
