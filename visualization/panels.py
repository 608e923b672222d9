"""Panels beside the economy charts: run status, inequality summary, elections, social network, worker
inspector and LLM accounting."""

from __future__ import annotations

import networkx as nx
import numpy as np
import solara
from matplotlib.collections import LineCollection
from mesa.visualization.utils import update_counter

from agents.worker import WORKER_MINDS
from visualization.charts import Chart

NETWORK_COLOURINGS = ("vote", "satisfaction")
SKILL_LABEL = "skill ($ a year per weekly hour)"
LIVE_INTERVAL_S = 1.0


def llm_accounting(model):
    """The counters of the model's LLM client (``model.llm.accounting``), or None without an LLM."""
    return getattr(model.llm, "accounting", None)


def accounting_dict(accounting) -> dict:
    return accounting.to_dict() if hasattr(accounting, "to_dict") else dict(accounting)


def use_live(accounting) -> None:
    """Re-render every :data:`LIVE_INTERVAL_S` seconds while there are LLM counters, so that requests and
    tokens move during a long LLM step, not only when the step ends."""
    _, set_tick = solara.use_state(0)

    def poll(cancel):
        while accounting is not None and not cancel.wait(LIVE_INTERVAL_S):
            set_tick(lambda tick: tick + 1)

    solara.use_thread(poll, dependencies=[id(accounting)], intrusive_cancel=False)


def llm_progress(accounting) -> str:
    data = accounting_dict(accounting)
    tokens = data.get("prompt_tokens", 0) + data.get("completion_tokens", 0)
    failures = sum(data.get("failures", {}).values())
    return f"**Requests:** {data.get('requests', 0)} · **tokens:** {tokens:,} · **failures:** {failures}"


@solara.component
def RunStatus(model):
    """What is running, how far it got (steps, and LLM requests as they return), and any invalid control
    value."""
    update_counter.get()
    accounting = llm_accounting(model)
    use_live(accounting)
    if model.input_error:
        solara.Error(f"Invalid parameter - {model.input_error}. Showing the default economy; "
                     "correct the value and press Reset.")
    kwargs = model.model_kwargs
    planner = model.params.planner
    if not model.params.uses_planner:
        planner = "elected leader"
    solara.Markdown(
        f"**Step {int(model.time)} of {model.max_steps}** · {len(model.workforce)} workers · "
        f"preset `{model.preset}` · brackets `{model.bracket_set.name}` · "
        f"scenario `{model.scenario_name}` · planner `{planner}` · "
        f"objective `{model.objective_name}` · mind `{kwargs['worker_mind']}` · seed {kwargs['rng']}")
    solara.ProgressLinear(value=100 * float(model.time) / model.max_steps)
    if accounting is not None:
        solara.Markdown(f"LLM so far: {llm_progress(accounting)}")


@solara.component
def InequalitySummary(model):
    """Gini coefficients and mean income this step."""
    update_counter.get()
    solara.Markdown(
        "| measure | value |\n|---|---|\n"
        f"| Gini, pre-tax income | {model.gini_pre_tax:.3f} |\n"
        f"| Gini, post-tax income | {model.gini_post_tax:.3f} |\n"
        f"| mean pre-tax income (USD) | {model.mean_income:,.0f} |\n"
        f"| revenue rebated per worker (USD) | {model.rebate:,.0f} |\n"
        f"| mean weekly hours | {model.mean_hours:.1f} |")


@solara.component
def ElectionResults(model):
    """Results of each election held so far and the current leader."""
    update_counter.get()
    elections = getattr(model, "elections", None)
    if elections is None or (not elections and getattr(model, "election", None) is None):
        solara.Info("No elections in this scenario.")
        return
    if not elections:
        solara.Info("No election held yet.")
        return
    solara.Markdown(f"**Current leader: {elections[-1]['leader']}**")
    rows = [f"| {e['period']} | {e['leader']} | "
            + ", ".join(f"{candidate}: {count}" for candidate, count in e["votes"].items()) + " |"
            for e in elections[-10:][::-1]]
    solara.Markdown("| period | leader | votes |\n|---|---|---|\n" + "\n".join(rows))


def worker_value(agent, name: str):
    """A worker's ``attribute(name)``, else its property (a column of the workforce, such as ``vote``)."""
    value = agent.attribute(name)
    return getattr(agent, name, None) if value is None else value


def worker_values(model, name: str) -> list:
    """:func:`worker_value` of every worker in index order; missing values (NaN, a vote of -1) as None."""
    workers = sorted(model.workers, key=lambda agent: agent.index)
    values = [worker_value(agent, name) for agent in workers]
    return [None if value is None or value != value or (name == "vote" and value == -1) else value
            for value in values]


def draw_votes(axes, xy, votes):
    """Nodes in one colour per candidate voted for, grey for no vote."""
    votes = np.array([-1 if vote is None else vote for vote in votes])
    for k, candidate in enumerate(sorted(set(votes.tolist()) - {-1})):
        mask = votes == candidate
        axes.scatter(xy[mask, 0], xy[mask, 1], s=20, color=f"C{k % 10}", zorder=2,
                     label=f"worker {candidate}")
    if np.any(votes == -1):
        none = votes == -1
        axes.scatter(xy[none, 0], xy[none, 1], s=20, color="lightgrey", zorder=2, label="no vote")
    axes.legend(fontsize=8, loc="lower left", title="voted for", title_fontsize=8)


@solara.component
def SocialNetwork(model):
    """The social network, nodes coloured by each worker's vote or satisfaction."""
    update_counter.get()
    colouring, set_colouring = solara.use_state(NETWORK_COLOURINGS[0])
    network = getattr(model, "network", None)
    positions = solara.use_memo(lambda: None if network is None else nx.spring_layout(network, seed=0),
                                [id(network)])
    if network is None:
        solara.Info("No social network in this scenario.")
        return
    solara.ToggleButtonsSingle(value=colouring, values=list(NETWORK_COLOURINGS), on_value=set_colouring)
    nodes = list(network.nodes)
    values = worker_values(model, colouring)
    node_values = [values[node] for node in nodes]

    def draw(figure, axes):
        axes.set_axis_off()
        xy = np.array([positions[node] for node in nodes])
        axes.add_collection(LineCollection([(positions[a], positions[b]) for a, b in network.edges],
                                           colors="lightgrey", linewidths=0.5, zorder=1))
        if all(value is None for value in node_values):
            axes.scatter(xy[:, 0], xy[:, 1], s=20, color="grey", zorder=2)
            axes.set_title(f"no worker has a '{colouring}' value yet", fontsize=10)
            return
        axes.set_title(f"{network.number_of_nodes()} workers coloured by {colouring}", fontsize=10)
        if colouring == "vote":
            draw_votes(axes, xy, node_values)
            return
        numbers = np.array([np.nan if value is None else float(value) for value in node_values], dtype=float)
        points = axes.scatter(xy[:, 0], xy[:, 1], s=20, c=numbers, cmap="viridis", zorder=2)
        figure.colorbar(points, ax=axes, label=colouring)

    Chart(draw, [id(model), id(network), colouring, str(node_values)], size=(5.0, 4.0))


def parse_worker_index(text: str, workers: int) -> int:
    """The worker index typed into the inspector, or ValueError naming the field and allowed range."""
    try:
        index = int(str(text).strip())
    except ValueError:
        index = None
    if index is None or not 0 <= index < workers:
        raise ValueError(f"worker: must be a whole number from 0 to {workers - 1}, got {text!r}")
    return index


def worker_history(model, agent):
    """The worker's collected data (skill, hours, income, tax, utility) per step, or None if not collected."""
    if not model.agent_interval:
        return None
    frame = model.datacollector.get_agenttype_vars_dataframe(model.worker_class)
    if frame.empty:
        return None
    history = frame.xs(agent.unique_id, level="AgentID").drop(columns="AgentType", errors="ignore")
    history.index = history.index.astype(int).rename("step")  # Mesa keys rows by its float time
    return history.rename(columns={"skill": SKILL_LABEL})


def mind_description(name: str) -> str:
    """The first line of a registered worker mind's docstring, as its author describes it."""
    doc = (WORKER_MINDS[name].__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else "no description"


@solara.component
def WorkerInspector(model):
    """One worker's persona, current state, history, and last prompt and answer."""
    update_counter.get()
    text, set_text = solara.use_state("0")
    try:
        index, problem = parse_worker_index(text, len(model.workforce)), None
    except ValueError as error:
        index, problem = None, str(error)
    agent = None if index is None else next(a for a in model.workers if a.index == index)
    history = solara.use_memo(lambda: None if agent is None else worker_history(model, agent),
                              [id(model), int(model.time), index])
    solara.InputText(label=f"Worker index (0-{len(model.workforce) - 1})", value=text, on_value=set_text)
    if problem:
        solara.Error(problem)
        return
    solara.Markdown(f"**Persona:** {agent.persona or 'none (this population has no personas)'}")
    wage = agent.attribute("hourly_wage")
    pay = f"wage ${wage:,.2f}/h" if wage is not None else f"skill ${agent.skill:,.0f} a year per weekly hour"
    solara.Text(f"{pay} · hours {agent.hours:.1f} · income ${agent.income:,.0f} a year · "
                f"tax ${agent.tax:,.0f} · utility {agent.utility:.3f}")
    exchanges = getattr(model.worker_mind, "last_exchange", None)
    if exchanges is None:
        name = model.model_kwargs["worker_mind"]
        solara.Text(f"Last prompt and answer: none ({name} minds ask no LLM: {mind_description(name)}).")
    elif index not in exchanges:
        solara.Text("Last prompt and answer: none yet (this worker has not been asked, or follows its "
                    "archetype's representative).")
    else:
        messages, answer = exchanges[index]
        prompt = "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content', '')}" for m in messages)
        solara.Markdown(f"**Last prompt:**\n\n```\n{prompt}\n```\n\n**Last answer:**\n\n```\n{answer}\n```")
    if history is None:
        solara.Text("No worker history collected (agent_interval = 0).")
    else:
        solara.DataFrame(history.tail(10).round(2).reset_index(), items_per_page=10)


@solara.component
def LLMAccounting(model):
    """LLM requests, tokens and failures so far."""
    update_counter.get()
    accounting = llm_accounting(model)
    use_live(accounting)
    if accounting is None:
        solara.Info("Rational minds: no LLM calls.")
        return
    data = accounting_dict(accounting)
    solara.Markdown(llm_progress(accounting))
    solara.Markdown("| counter | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in data.items()))
