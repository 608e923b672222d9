"""Social networks over workers (networkx graphs whose nodes are workforce row indices)."""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import numpy as np
import pandas as pd

from registry import Registry

NETWORKS: Registry[Callable[..., nx.Graph | None]] = Registry("network")
"""Network builders ``(skills, attributes, rng, *, degree, rewire) -> graph or None``."""


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


@NETWORKS.register("homophily")
def homophily_small_world(skills, attributes: pd.DataFrame, rng: np.random.Generator, *, degree: int = 6,
                          rewire: float = 0.1) -> nx.Graph:
    """A Watts-Strogatz ring laid over workers sorted by occupation group, then by skill.

    Neighbours on the ring share an occupation and have similar income; a share ``rewire``
    of the edges is rewired at random, which gives the small-world shortcuts.
    """
    n = len(skills)
    keys = [np.log(np.asarray(skills, dtype=float))]
    if "occupation_group" in attributes.columns:
        keys.append(pd.Categorical(attributes["occupation_group"]).codes)
    order = np.lexsort(keys)
    ring = nx.watts_strogatz_graph(n, min(degree, n - 1 - (n - 1) % 2), rewire, seed=_seed(rng))
    return nx.relabel_nodes(ring, dict(enumerate(order.tolist())))


@NETWORKS.register("watts_strogatz")
def watts_strogatz(skills, attributes, rng, *, degree: int = 6, rewire: float = 0.1) -> nx.Graph:
    n = len(skills)
    return nx.watts_strogatz_graph(n, min(degree, n - 1 - (n - 1) % 2), rewire, seed=_seed(rng))


@NETWORKS.register("barabasi_albert")
def barabasi_albert(skills, attributes, rng, *, degree: int = 6, rewire: float = 0.1) -> nx.Graph:
    n = len(skills)
    return nx.barabasi_albert_graph(n, max(1, min(degree // 2, n - 1)), seed=_seed(rng))


@NETWORKS.register("none")
def no_network(skills, attributes, rng, **options) -> None:
    return None


def build_network(kind: str, skills, attributes: pd.DataFrame, rng: np.random.Generator, *,
                  degree: int = 6, rewire: float = 0.1) -> nx.Graph | None:
    """Build the registered network ``kind`` over the workers (``None`` for ``none``)."""
    return NETWORKS[kind](skills, attributes, rng, degree=degree, rewire=rewire)


def neighbour_share(graph: nx.Graph | None, choices: np.ndarray, n_options: int) -> np.ndarray:
    """For each worker, the share of its neighbours choosing each option (zeros without neighbours)."""
    share = np.zeros((choices.size, n_options))
    if graph is None or graph.number_of_edges() == 0:
        return share
    adjacency = nx.to_scipy_sparse_array(graph, nodelist=range(choices.size), format="csr")
    counts = adjacency @ np.eye(n_options)[choices]
    degree = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, degree, out=share, where=degree > 0)
