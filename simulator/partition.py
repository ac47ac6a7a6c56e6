"""Kafka's default key partitioner (murmur2, as in the Java client), vectorised over many keys.

kafka-python hashes each key in pure Python (~10 us per message); hashing a whole slice of keys with
numpy and passing ``partition=`` explicitly puts every key on the partition any Kafka client would pick.

>>> murmur2(np.array(["21", "foobar", "a-little-bit-long-string"]))
array([1173551340, 1357151166, 1161502112], dtype=uint32)
>>> partitions_for(np.array(["C1231006815"]), 4).tolist()
[3]
"""
from __future__ import annotations

import numpy as np

__all__ = ["murmur2", "partitions_for"]

_M = np.uint32(0x5BD1E995)
_SEED = 0x9747B28C


def _hash_same_length(data: np.ndarray) -> np.ndarray:
    n, length = data.shape
    d = data.astype(np.uint32)
    h = np.full(n, _SEED ^ length, dtype=np.uint32)
    for i in range(length // 4):
        k = d[:, 4 * i] | (d[:, 4 * i + 1] << 8) | (d[:, 4 * i + 2] << 16) | (d[:, 4 * i + 3] << 24)
        k = k * _M
        k ^= k >> np.uint32(24)
        k = k * _M
        h = h * _M
        h ^= k
    tail, extra = length & ~3, length % 4
    if extra >= 3:
        h ^= d[:, tail + 2] << 16
    if extra >= 2:
        h ^= d[:, tail + 1] << 8
    if extra >= 1:
        h ^= d[:, tail]
        h = h * _M
    h ^= h >> np.uint32(13)
    h = h * _M
    h ^= h >> np.uint32(15)
    return h & np.uint32(0x7FFFFFFF)


def murmur2(keys: np.ndarray) -> np.ndarray:
    """Positive murmur2 hash (``hash & 0x7fffffff``) of each ASCII string key."""
    keys = np.asarray(keys)
    out = np.empty(len(keys), dtype=np.uint32)
    lengths = np.strings.str_len(keys)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        raw = "".join(keys[rows].tolist()).encode("ascii")
        out[rows] = _hash_same_length(np.frombuffer(raw, dtype=np.uint8).reshape(len(rows), int(length)))
    return out


def partitions_for(keys: np.ndarray, n_partitions: int) -> np.ndarray:
    """The partition Kafka's default partitioner gives each key, for a topic of ``n_partitions``."""
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, got {n_partitions!r}")
    return (murmur2(keys) % np.uint32(n_partitions)).astype(np.int64)
