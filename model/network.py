"""Social networks over workers (networkx graphs whose nodes are workforce row indices)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

NETWORKS = ("homophily", "watts_strogatz", "barabasi_albert", "none")


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


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


def build_network(kind: str, skills, attributes: pd.DataFrame, rng: np.random.Generator, *,
                  degree: int = 6, rewire: float = 0.1) -> nx.Graph | None:
    """Build the named network, or ``None`` for ``none``."""
    n = len(skills)
    if kind == "none":
        return None
    if kind == "homophily":
        return homophily_small_world(skills, attributes, rng, degree=degree, rewire=rewire)
    if kind == "watts_strogatz":
        return nx.watts_strogatz_graph(n, min(degree, n - 1 - (n - 1) % 2), rewire, seed=_seed(rng))
    if kind == "barabasi_albert":
        return nx.barabasi_albert_graph(n, max(1, min(degree // 2, n - 1)), seed=_seed(rng))
    raise ValueError(f"network: unknown network {kind!r}; allowed: {', '.join(NETWORKS)}")


def neighbour_share(graph: nx.Graph | None, choices: np.ndarray, n_options: int) -> np.ndarray:
    """For each worker, the share of its neighbours choosing each option (zeros without neighbours)."""
    share = np.zeros((choices.size, n_options))
    if graph is None or graph.number_of_edges() == 0:
        return share
    adjacency = nx.to_scipy_sparse_array(graph, nodelist=range(choices.size), format="csr")
    counts = adjacency @ np.eye(n_options)[choices]
    degree = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, degree, out=share, where=degree > 0)
