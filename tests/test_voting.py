"""Democratic scenario with rational voters, and the social network."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from agents.voting import RationalElection, equilibrium_utilities
from model.model import EconomyModel
from agents.network import NETWORKS, build_network, neighbour_share


def flat_economy(skills, **kwargs):
    return EconomyModel(skills=skills, brackets="flat", initial_rates=[0.3], scenario_name="democratic", network="none",
                        tax_year_length=2, max_steps=10, **kwargs)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_median_voter_decides_between_two_platforms(seed):
    """Preferences over flat rates are single-crossing in skill, so the median voter's choice wins a majority."""
    skills = np.random.default_rng(seed).lognormal(6.5, 0.9, 101)
    model = flat_economy(skills, rng=seed)
    platforms = [[0.15], [0.45]]
    utility = equilibrium_utilities(model, [model.schedule.with_rates(r) for r in platforms])
    median = int(np.argsort(skills)[50])
    favourite = int(np.argmax(utility[median]))
    result = model.election.hold(model, candidates=[0, 1], platforms=platforms)
    assert result.votes[result.leader] >= 51
    assert result.platforms[result.candidates.index(result.leader)] == tuple(platforms[favourite])
    prefers_low = utility[:, 0] > utility[:, 1]
    assert 0 < prefers_low.sum() < 101  # both platforms have supporters


def test_plurality_elects_the_median_voters_platform_in_a_constructed_population():
    skills = np.array([15.0, 18.0, 2500.0, 2520.0, 2540.0, 6000.0, 6500.0])
    model = flat_economy(skills, rng=0)
    platforms = [[0.05], [0.3], [0.7]]
    utility = equilibrium_utilities(model, [model.schedule.with_rates(r) for r in platforms])
    assert np.argmax(utility, axis=1).tolist() == [2, 2, 1, 1, 1, 0, 0]
    result = model.election.hold(model, candidates=[0, 3, 6], platforms=platforms)
    assert result.leader == 3 and result.votes == {0: 2, 3: 3, 6: 2}


def test_seeded_tie_break_is_reproducible():
    skills = np.array([15.0, 4000.0])
    winners = []
    for seed in range(12):
        model = flat_economy(skills, rng=seed)
        result = model.election.hold(model, candidates=[0, 1], platforms=[[0.8], [0.0]])
        assert result.votes == {0: 1, 1: 1}
        again = flat_economy(skills, rng=seed)
        assert again.election.hold(again, candidates=[0, 1], platforms=[[0.8], [0.0]]).leader == result.leader
        winners.append(result.leader)
    assert set(winners) == {0, 1}


def test_binding_and_non_binding_platforms():
    """A high earner wins on a high-tax platform: bound, it enacts the platform; free, it cuts its own taxes."""
    skills = np.random.default_rng(4).lognormal(6.5, 0.9, 60)
    leader = int(np.argmax(skills))
    models = {binding: flat_economy(skills, binding_platforms=binding, rng=4) for binding in (True, False)}
    for model in models.values():
        model.step()
        model.step()  # the election closing tax year 0
        model.elections[-1] = {"period": 1, "leader": leader, "votes": {leader: 60}, "platform": (0.7,)}
        model.step()  # tax year 1 starts: the leader sets the rates
    assert models[True].schedule.rates.tolist() == [0.7]
    options = [0.1, 0.2, 0.3, 0.4, 0.5]  # the rate in force (0.3) moved by each shift
    free = models[False]
    utility = equilibrium_utilities(free, [free.schedule.with_rates([r]) for r in options])[leader]
    assert free.schedule.rates.tolist() == [options[int(np.argmax(utility))]] == [0.1]


def test_conformity_follows_neighbours():
    model = flat_economy(np.full(4, 500.0), rng=0)
    model.network = nx.star_graph(3)  # worker 0 is linked to 1, 2, 3
    utility = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert RationalElection(conformity=0.0).ballots(model, utility).tolist() == [0, 1, 1, 1]
    assert RationalElection(conformity=1.0).ballots(model, utility).tolist() == [1, 0, 0, 0]
    assert RationalElection(conformity=0.4).ballots(model, utility).tolist() == [0, 1, 1, 1]
    assert RationalElection(conformity=0.6).ballots(model, utility).tolist() == [1, 0, 0, 0]


def test_neighbour_share():
    graph = nx.path_graph(3)
    share = neighbour_share(graph, np.array([0, 1, 1]), 2)
    assert share.tolist() == [[0.0, 1.0], [0.5, 0.5], [0.0, 1.0]]


def test_networks():
    rng = np.random.default_rng(0)
    skills = rng.lognormal(6.5, 1.0, 300)
    for kind in NETWORKS:
        graph = build_network(kind, skills, pd.DataFrame(), np.random.default_rng(1))
        if kind == "none":
            assert graph is None
        else:
            assert graph.number_of_nodes() == 300 and nx.is_connected(graph)
    homophily = build_network("homophily", skills, pd.DataFrame(), np.random.default_rng(1), rewire=0)
    gaps = [abs(np.log(skills[a]) - np.log(skills[b])) for a, b in homophily.edges]
    random_pairs = np.abs(np.log(skills) - np.log(rng.permutation(skills)))
    assert np.mean(gaps) < 0.2 * np.mean(random_pairs)
    with pytest.raises(ValueError, match="network: .*allowed: homophily"):
        build_network("grid", skills, None, rng)


def test_democratic_run_records_elections_and_leader():
    model = EconomyModel(workers=80, scenario_name="democratic", tax_year_length=4, max_steps=12, agent_interval=0, rng=5)
    while model.running:
        model.step()
    assert [e["period"] for e in model.elections] == [3, 7, 11]
    frame = model.datacollector.get_model_vars_dataframe()
    assert frame["leader"].iloc[-1] == model.elections[-1]["leader"] and frame["leader"].iloc[0] == -1
    assert sum(model.elections[-1]["votes"].values()) == 80
    assert set(np.unique(model.workforce.vote)) <= set(model.elections[-1]["votes"])
    assert [worker.vote for worker in sorted(model.workers, key=lambda w: w.index)] == model.workforce.vote.tolist()
    assert [p for p, _ in model.planner.history] == [0, 4, 8]


@pytest.mark.parametrize(("kwargs", "field"), [({"scenario_name": "anarchy"}, "scenario_name"),
                                                ({"network": "grid"}, "network"),
                                                ({"scenario_name": "democratic", "conformity": 2.0}, "conformity"),
                                                ({"scenario_name": "democratic", "candidates": 0}, "candidates")])
def test_bad_scenario_input(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        EconomyModel(workers=10, **kwargs)


def test_democratic_scenario_starts_no_llm_for_an_unused_llm_planner():
    model = EconomyModel(workers=20, scenario_name="democratic", planner="llm", backend="openai",
                         base_url="http://127.0.0.1:9/v1", max_steps=2, agent_interval=0, rng=1)
    assert model.llm is None
    model.step()
