"""LLM minds: workers that choose hours, and a planner that chooses rates, by prompting a model.

Every stage is one batch through the LLM layer (``llm_runtime.LLMClient.run_batch``), each request
keyed ``(run_id, period, stage, decider)`` so a run can be replayed or resumed from the
response store. Answers are validated against bounded schemas and re-asked when invalid, never
clipped into range. A failed answer never stops a run: a worker keeps its last hours and the
planner keeps its rates, and both count the failure. The run's prompt style (:mod:`agents.prompt_styles`)
writes the prompts, names the answer schemas and reads the answers: the paper style clips as the reference
does (LABOR to the cap, DELTA to +-20 points, rates to [0, 100] %) and counts every clipped answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from typing import Annotated

import numpy as np
from pydantic import Field

from agents.archetypes import Archetypes
from agents.llm_voting import Electorate, LLMElection, LLMLeaderRule
from agents.planner import PLANNERS, PlannerRule
from agents.prompt_styles import PROMPT_STYLES
from agents.prompts import PAY_HOURS, WorkerMemory, best_memories, pay_table
from agents.worker import WORKER_MINDS, WorkerMind
from llm_runtime import LLMRequest, RequestStream

DEFAULT_HOURS = 40.0
# An answer is short JSON (hours and at most 160 characters of reason); a cap stops a model that rambles.
WORK_MAX_TOKENS = 96


class Exchanges(Mapping):
    """Decider row -> (messages, raw answer) of one batch; kept as the batch's own lists, not copied."""

    def __init__(self, rows: np.ndarray, requests: list[LLMRequest], results: list):
        self._position = dict(zip(rows.tolist(), range(len(requests))))
        self._requests, self._results = requests, results

    def __getitem__(self, row: int) -> tuple[list[dict], str | None]:
        i = self._position[row]
        return self._requests[i].messages, self._results[i].raw

    def __iter__(self):
        return iter(self._position)

    def __len__(self) -> int:
        return len(self._position)


@WORKER_MINDS.register("llm")
class LLMWorkerMind(WorkerMind):
    """Hours from an LLM prompted with each worker's own history (in-context learning of its utility).

    With ``archetypes=K`` (see :mod:`agents.archetypes`), one request per archetype, written
    for its most typical member, decides the hours of every member.
    """

    needs_llm = True
    reflects = True

    def __init__(self, model):
        super().__init__(model)
        params = model.params
        self.client, self.style, self.run_id = model.llm, PROMPT_STYLES[params.prompt_mode](), params.run_id
        self.history_length = params.history_length
        if self.history_length is None:
            self.history_length = self.style.history_length
        self.archetypes = Archetypes.fit(model.workforce.skill, model.workforce.attributes, params.archetypes,
                                         model.rng) if params.archetypes else None
        self._memory: dict[int, list[WorkerMemory]] = {}
        self._unread: list[tuple] = []  # observed steps not yet unpacked into every decider's history
        self._read: dict[int, int] = {}  # how many of them each decider's history holds
        self._best: dict[int, list[WorkerMemory]] = {}  # each decider's best_memories, kept up to date
        self.last_hours: np.ndarray | None = None
        self.failures = 0
        self.clipped = 0  # answers above the cap that the style clips
        self.last_exchange: Mapping[int, tuple[list[dict], str | None]] = {}

    def deciders(self, model) -> np.ndarray:
        """Workforce rows that are prompted: every worker, or each archetype's representative."""
        return np.arange(len(model.workforce)) if self.archetypes is None else self.archetypes.representatives

    def initial_hours(self, model) -> np.ndarray:
        return np.full(len(model.workforce), DEFAULT_HOURS)

    def exploit(self, model) -> bool:
        """Best-so-far at the end of each tax year and in the last 10 % of the run (the reference's switch)."""
        return (model.period + 1) % model.tax_year_length == 0 or model.period > 0.9 * model.max_steps

    def decide(self, model) -> np.ndarray:
        deciders = self.deciders(model)
        current = model.workforce.hours[deciders]
        exploit = self.exploit(model)
        style = self.style
        schema = style.worker_schema(self.cap)
        skills = model.workforce.skill[deciders]
        schedule, rebate = model.schedule, model.expected_rebate
        schedule_text = schedule.describe()
        # flat Python lists, sliced per worker: one conversion of each table instead of one list per row
        rates, take_home = (table.ravel().tolist() for table in pay_table(schedule, skills, rebate))
        levels = len(PAY_HOURS)
        skills = skills.tolist()
        requests: list[LLMRequest] = []

        def build():  # prompts are built as the client takes them: the first ones are sent meanwhile
            for i, row in enumerate(deciders.tolist()):
                messages = style.worker_messages(
                    worker=row, skill=skills[i], history=self.history(row), best=self.best(row),
                    history_length=self.history_length, exploit=exploit,
                    persona=model.workers_persona(row), schedule=schedule, rebate=rebate,
                    schedule_text=schedule_text,
                    pay=(rates[i * levels:(i + 1) * levels], take_home[i * levels:(i + 1) * levels]))
                requests.append(LLMRequest(key=(self.run_id, model.period, "work", row), messages=messages,
                                           schema=schema, max_tokens=WORK_MAX_TOKENS))
                yield requests[-1]
            # every history is unpacked now; the previous step's prompts and answers are freed here, while
            # this batch is still in flight, rather than after it, when freeing them would hold up the step
            self._unread.clear()
            self._read.clear()
            self.last_exchange = {}

        results = self.client.run_batch(RequestStream(len(deciders), build()))
        chosen, failed = style.decode_hours([r.value if r.ok else None for r in results], current, self.cap,
                                            owner=self, llm=self.client)
        self.failures += int(failed.sum())
        self.last_exchange = Exchanges(deciders, requests, results)
        if self.archetypes is None:
            return chosen
        return self.archetypes.broadcast(chosen)

    def observe(self, model) -> None:
        """Remember this step's outcome for every decider (called after settle).

        The step is kept as columns; a decider's history is unpacked from them when it is next read, which for
        the next prompts happens while the next batch is already on its way.
        """
        w, rates = model.workforce, tuple(map(float, model.schedule.rates))
        rows = self.deciders(model)
        base = model.preferences.base_consumption
        columns = (w.skill[rows], w.hours[rows], w.income[rows], w.tax[rows], w.consumption[rows] - base,
                   w.utility[rows], model.schedule.marginal_rate(w.income[rows]))
        self._unread.append((model.period, rates, float(model.rebate), dict(zip(rows.tolist(), range(rows.size))),
                             [np.asarray(c, dtype=float).tolist() for c in columns]))

    def history(self, row: int) -> list[WorkerMemory]:
        """``row``'s remembered steps, oldest first."""
        memories = self._memory.setdefault(row, [])
        unread = self._unread[self._read.get(row, 0):]
        if unread:
            new = []
            for period, rates, rebate, position, (skill, hours, income, tax, post_tax, utility, marginal) in unread:
                i = position[row]
                new.append(WorkerMemory(period, rates, skill[i], hours[i], income[i], tax[i], rebate, post_tax[i],
                                        utility[i], marginal[i]))
            memories += new
            # the best of all steps are among the best so far and the new ones: no need to sort the whole history
            self._best[row] = best_memories(self._best.get(row, []) + new)
            self._read[row] = len(self._unread)
        return memories

    def best(self, row: int) -> list[WorkerMemory]:
        """``row``'s best remembered steps (:func:`agents.prompts.best_memories` of its history)."""
        self.history(row)
        return self._best.get(row, [])

    @property
    def memory(self) -> dict[int, list[WorkerMemory]]:
        """Every decider's history."""
        if self._unread:
            for row in self._unread[-1][3]:
                self.history(row)
            self._unread.clear()
            self._read.clear()
        return self._memory

    def electorate(self, model):
        """LLM elections among the deciders, each voter prompted with its persona and its own history."""
        archetypes = self.archetypes
        electorate = Electorate(style=self.style, client=self.client, run_id=self.run_id,
                                deciders=self.deciders(model), persona=model.workers_persona, memory=self.history,
                                broadcast=(lambda ballots: ballots) if archetypes is None else archetypes.broadcast)
        binding = model.params.binding_platforms
        return LLMElection(electorate, binding=binding), LLMLeaderRule(electorate, binding=binding)

    def reflect(self, model) -> None:
        """Bounded scenario: each persona judges the step; NO halves its remembered utility.

        The planner's objective keeps the unadjusted utility. A failed answer counts as YES.
        """
        rows, style, memory = self.deciders(model), self.style, self.memory
        schema = style.satisfaction_schema()
        requests = [LLMRequest(key=(self.run_id, model.period, "satisfaction", row), schema=schema,
                               messages=style.satisfaction_messages(row, model.workers_persona(row),
                                                                    memory[row][-1]))
                    for row in rows.tolist()]
        results = self.client.run_batch(requests)
        ratio = np.ones(rows.size)
        for i, result in enumerate(results):
            if result.ok:
                ratio[i] = 1.0 if style.satisfied(result.value) else 0.5
            else:
                self.failures += 1
        for row, r in zip(rows.tolist(), ratio.tolist(), strict=True):
            last = memory[row][-1]
            memory[row][-1] = dataclasses.replace(last, utility=last.utility * r)
            if any(m is last for m in self._best.get(row, [])):
                self._best[row] = best_memories(memory[row])
        model.workforce.satisfaction[:] = ratio if self.archetypes is None else self.archetypes.broadcast(ratio)


@PLANNERS.register("llm")
class LLMPlannerRule(PlannerRule):
    """In-context RL planner: one request per tax year with the per-year record so far.

    The run's prompt style writes the prompt and reads the answer: ``paper`` asks for DELTA per bracket,
    clipped to [-20, 20] points and rounded to 10 (clipped answers are counted); ``improved`` asks for
    absolute rates in whole percent. The prompt keeps one line per tax year (rates, objective, mean hours,
    Gini) and the best year so far, trimmed to the last ``max_years`` years so it does not grow with the run
    or the population.
    """

    needs_llm = True

    def __init__(self, max_years: Annotated[int, Field(ge=1, le=1000)] = 20):
        self.max_years = max_years
        self.years: list[dict] = []
        self.failures = 0
        self.clipped = 0
        self.last_exchange: tuple[list[dict], str | None] | None = None

    def initial_rates(self, model):
        params = model.params
        self.client, self.style, self.run_id = model.llm, PROMPT_STYLES[params.prompt_mode](), params.run_id
        return self.style.initial_rates(model.schedule.n_brackets) if params.initial_rates is None else None

    def record_year(self, model) -> None:
        self.years.append({"year": model.tax_year - 1, "rates": tuple(map(float, model.schedule.rates)),
                           "objective": float(model.objective), "mean_hours": float(model.mean_hours),
                           "gini": float(model.gini_post_tax)})

    def messages(self, model) -> list[dict]:
        final = model.period + model.tax_year_length >= model.max_steps
        return self.style.planner_messages(self.years, model.schedule, model.objective_name,
                                           max_years=self.max_years, final=final)

    def decide(self, model):
        self.record_year(model)
        current = model.schedule.rates
        request = LLMRequest(key=(self.run_id, model.period, "plan", "planner"), messages=self.messages(model),
                             schema=self.style.rates_schema(current.size))
        result = self.client.run_batch([request])[0]
        self.last_exchange = (request.messages, result.raw)
        answer = result.value if result.ok else None
        rates = self.style.decode_rates(answer, current, owner=self, llm=self.client)
        if rates is None:
            self.failures += 1
            return current
        return rates
