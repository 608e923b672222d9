"""LLM elections take what they know of the workers from an explicit :class:`Electorate`, with a scripted
client in process."""

from __future__ import annotations

import numpy as np
import pytest

from agents.llm_voting import Electorate, LLMElection, LLMLeaderRule
from agents.prompt_styles import PROMPT_STYLES
from llm_runtime import LLMResult
from model.model import EconomyModel

# two archetypes: workers 0-3 follow worker 0, workers 4-5 follow worker 4
LABELS = np.array([0, 0, 0, 0, 1, 1])
DECIDERS = np.array([0, 4])


class ScriptedVoters:
    """Every decider runs on its own rates and votes for itself; the leader asks for 30 % everywhere."""

    def __init__(self):
        self.batches = []

    def run_batch(self, requests):
        self.batches.append(list(requests))
        return [LLMResult(key=r.key, value=r.schema.model_validate(self.answer(r)), failure=None, raw="")
                for r in requests]

    @staticmethod
    def answer(request) -> dict:
        _, _, stage, row = request.key
        if stage == "candidacy":
            return {"run": True, "rates": [10 * (row + 1)] * 3}
        if stage == "vote":
            return {"vote": row, "reason": "scripted"}
        return {"rates": [30] * 3, "reason": "scripted"}


@pytest.fixture()
def setting():
    # rational minds: the election may not read anything of the model's worker mind
    model = EconomyModel(workers=6, brackets="three", scenario_name="democratic", tax_year_length=2, max_steps=2,
                         rng=1)
    model.step()
    client, remembered = ScriptedVoters(), []

    def memory(row):
        remembered.append(row)
        return []

    electorate = Electorate(style=PROMPT_STYLES["improved"](), client=client, run_id="civics", deciders=DECIDERS,
                            broadcast=lambda ballots: np.asarray(ballots)[LABELS],
                            persona=lambda row: f"worker number {row}", memory=memory)
    return model, electorate, client, remembered


def test_an_llm_election_prompts_the_electorates_deciders_in_one_batch_a_stage(setting):
    model, electorate, client, remembered = setting
    result = LLMElection(electorate).hold(model)
    assert [[r.key for r in batch] for batch in client.batches] == [
        [("civics", 0, "candidacy", 0), ("civics", 0, "candidacy", 4)],
        [("civics", 0, "vote", 0), ("civics", 0, "vote", 4)]]
    assert "You: worker number 4" in client.batches[0][1].messages[-1]["content"]
    assert sorted(set(remembered)) == [0, 4]
    # every member casts its archetype's ballot
    assert result.ballots.tolist() == [0, 0, 0, 0, 1, 1]
    assert result.votes == {0: 4, 4: 2} and result.leader == 0


def test_an_llm_leader_asks_through_the_electorates_client(setting):
    model, electorate, client, remembered = setting
    rates = LLMLeaderRule(electorate).selfish_rates(model, leader=4)
    assert [[r.key for r in batch] for batch in client.batches] == [[("civics", 0, "lead", 4)]]
    assert "You: worker number 4" in client.batches[0][0].messages[-1]["content"]
    assert rates == pytest.approx([0.3] * 3) and remembered == [4]
