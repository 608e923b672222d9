"""Archetypes for large populations: K clusters of workers, one LLM decision per cluster.

Workers are clustered by k-means on standardised features: log skill (double weight),
age, sex and occupation group where the population has them. Each archetype is prompted
through its most typical member (the one nearest the centroid), and every member applies
the archetype's decision unchanged: the same weekly hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.vq import kmeans2

FIT_SAMPLE = 50_000
CHUNK = 100_000


def features(skills, attributes: pd.DataFrame) -> np.ndarray:
    columns = [2.0 * np.log(np.asarray(skills, dtype=float))]
    if "age" in attributes.columns:
        columns.append(attributes["age"].to_numpy(dtype=float))
    if "sex" in attributes.columns:
        columns.append((attributes["sex"].astype(str) == "female").to_numpy(dtype=float))
    if "occupation_group" in attributes.columns:
        columns.append(pd.Categorical(attributes["occupation_group"]).codes.astype(float))
    data = np.column_stack(columns)
    spread = data.std(axis=0)
    data = (data - data.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    data[:, 0] *= 2.0
    return data


@dataclass
class Archetypes:
    labels: np.ndarray            # archetype of each worker
    representatives: np.ndarray   # workforce row of each archetype's most typical member

    @property
    def count(self) -> int:
        return self.representatives.size

    def broadcast(self, decisions: np.ndarray) -> np.ndarray:
        """Every worker's value: its archetype's decision."""
        return np.asarray(decisions)[self.labels]

    @classmethod
    def fit(cls, skills, attributes: pd.DataFrame, k: int, rng: np.random.Generator) -> Archetypes:
        data = features(skills, attributes)
        n = data.shape[0]
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"archetypes: must be an integer from 1 to the number of workers ({n}), got {k!r}")
        sample = data if n <= FIT_SAMPLE else data[rng.choice(n, FIT_SAMPLE, replace=False)]
        centroids, _ = kmeans2(sample, k, minit="++", seed=np.random.default_rng(rng.integers(2**63)))
        labels, distance = np.empty(n, dtype=np.intp), np.empty(n)
        centroid_norms = (centroids ** 2).sum(axis=1)
        for start in range(0, n, CHUNK):
            block = data[start:start + CHUNK]
            squared = (block ** 2).sum(axis=1)[:, None] - 2.0 * block @ centroids.T + centroid_norms[None, :]
            labels[start:start + CHUNK] = squared.argmin(axis=1)
            distance[start:start + CHUNK] = squared.min(axis=1)
        _, labels = np.unique(labels, return_inverse=True)
        order = np.lexsort((distance, labels))
        first = np.concatenate([[True], labels[order][1:] != labels[order][:-1]])
        return cls(labels=labels, representatives=order[first])
