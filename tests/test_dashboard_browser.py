"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against the dashboard
started as the README says (``python run.py dashboard``, from the repository root) on 127.0.0.1.

Without /usr/bin/chromium, playwright or a way to Solara's front-end files (cached, npm or the CDN)
these tests skip, unless ``REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes the missing piece a failure.
Screenshots go to ``results/test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.llm_server import FaultServer
from visualization import assets

pytestmark = pytest.mark.slow  # starts servers, processes or a browser: not in the quick subset

CHROMIUM = Path(os.environ.get("DASHBOARD_CHROMIUM", "/usr/bin/chromium"))  # Debian's chromium
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "results" / "test-artifacts"
REQUIRED = os.environ.get("REQUIRE_BROWSER", "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip the module, or fail it when the browser tests are required."""
    if REQUIRED:
        pytest.fail(f"REQUIRE_BROWSER is set but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not CHROMIUM.exists():
    unavailable(f"{CHROMIUM} not found (apt-get install -y chromium)")
try:
    from playwright import sync_api
except ImportError:
    unavailable("playwright is not installed (pip install playwright)")
if assets.missing() and shutil.which("npm") is None and not assets.cdn_reachable():
    unavailable(f"Solara's front-end files {', '.join(assets.missing())} are not cached, npm is not "
                "installed and cdn.jsdelivr.net is unreachable (apt-get install -y npm)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_dashboard(port: int, log: Path, env: dict | None = None, cwd: Path = ROOT,
                    flags: tuple[str, ...] = ()) -> subprocess.Popen:
    """``python run.py dashboard --port PORT``, as the README says (from the repository root unless ``cwd``
    says otherwise), in a process group of its own (a user's shell gives it one too)."""
    script = "run.py" if cwd == ROOT else str(ROOT / "run.py")
    with log.open("w") as output:
        return subprocess.Popen([sys.executable, script, "dashboard", *flags, "--port", str(port)], cwd=cwd,
                                stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dashboard exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"dashboard did not answer on {url} within {timeout:.0f} s:\n{log.read_text()}")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def end(process: subprocess.Popen) -> None:
    """SIGTERM the dashboard as ``kill PID`` does; anything of its group still there afterwards is killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def llm_server():
    """A slow OpenAI-compatible test server: one second per answer, two at a time."""
    with FaultServer(latency=1.0, slots=2) as fault_server:
        yield fault_server


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory, llm_server):
    """The dashboard on a free port of 127.0.0.1. LLM minds ask ``llm_server`` and record in a response
    store of the test's own: the model's relative store path resolves in a fresh working directory (from
    the repository root, answers stored by earlier runs would replay at once)."""
    workdir = tmp_path_factory.mktemp("server")
    log = workdir / "dashboard.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "LLM_BASE_URL": llm_server.base_url, "LLM_MODEL": "fault-model"}
    process = start_dashboard(port, log, env, cwd=workdir)
    try:
        wait_until_serving(url, process, log)
        yield url
    finally:
        end(process)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, never a browser downloaded by Playwright."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                              headless=True)
        context = chromium.new_context(viewport={"width": 1500, "height": 1100})
        yield context
        context.close()
        chromium.close()


class Console:
    """Errors the page reports: console errors, uncaught exceptions and failed requests."""

    def __init__(self, page):
        self.errors = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("response", lambda response: response.status >= 400 and self.errors.append(
            f"HTTP {response.status}: {response.url}"))


def open_dashboard(browser, url):
    page = browser.new_page()
    console = Console(page)
    page.goto(url)
    page.get_by_text("Time: 0.0").wait_for(timeout=60_000)
    page.wait_for_function("document.querySelectorAll('img').length >= 6", timeout=60_000)
    return page, console


def status(page) -> str:
    return page.locator("p", has_text=re.compile(r"Step \d+ of \d+")).first.inner_text()


def choose(page, label: str, option: str) -> None:
    page.locator(".v-select", has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def type_into(page, label: str, text: str) -> None:
    field = page.get_by_label(label)
    field.fill(text)
    field.press("Enter")


def image_sources(page) -> list[str]:
    return page.locator("img").evaluate_all("images => images.map(image => image.src)")


def press(page, button: str) -> None:
    page.get_by_role("button", name=button, exact=True).click()


def thumb_label(page, slider_label: str):
    return page.locator(".v-input__slider", has_text=slider_label).locator(".v-slider__thumb-label")


def test_readme_start_renders_the_page_and_sigterm_ends_the_whole_dashboard(tmp_path, browser):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "dashboard.log"
    process = start_dashboard(port, log)
    try:
        wait_until_serving(url, process, log)
        page, console = open_dashboard(browser, url)
        for button in ("Reset", "▶", "Step"):  # the sidebar
            page.get_by_role("button", name=button, exact=True).wait_for()
        page.get_by_label("Workers (2-10000)").wait_for()
        assert thumb_label(page, "Tax-year length (steps)").inner_text() == "5"  # slider values in view
        assert thumb_label(page, "Steps to run").is_visible()
        drawn = "Array.from(document.images).filter(image => image.naturalWidth > 100).length"
        assert page.evaluate(drawn) >= 6  # the plots, not empty frames
        assert "planner blackbox" in status(page)
        assert console.errors == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-readme-start.png"))
        page.close()

        process.send_signal(signal.SIGTERM)  # kill PID
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        assert not listening(port)
        assert not group_alive(process.pid), "a process of the dashboard's group outlived it"
    finally:
        end(process)


def test_controls_step_and_plots_update_in_chromium(dashboard_url, browser):
    page, console = open_dashboard(browser, dashboard_url)
    assert console.errors == []
    assert "Step 0 of 100 · 100 workers" in status(page)
    charts = page.evaluate("""() => Array.from(document.images).map(image => [
        image.getBoundingClientRect().width, image.closest('.vue-grid-item').getBoundingClientRect().width])""")
    assert len(charts) >= 6 and all(width >= 0.8 * cell for width, cell in charts), charts  # charts fill their cells

    choose(page, "Planner", "blackbox")
    type_into(page, "Workers (2-10000)", "60")
    page.get_by_role("slider").nth(2).press("Home")  # tax-year length 1: new rates every step
    assert thumb_label(page, "Tax-year length (steps)").inner_text() == "1"
    press(page, "Reset")
    page.get_by_text("Step 0 of 100 · 60 workers").wait_for()
    assert "planner blackbox" in status(page)

    before = image_sources(page)
    for step in (1, 2, 3):
        press(page, "Step")
        page.get_by_text(f"Time: {step}.0").wait_for()
    page.get_by_text("Step 3 of 100").wait_for()
    every_image_changed = "before => Array.from(document.images).every((image, i) => image.src !== before[i])"
    page.wait_for_function(every_image_changed, arg=before)
    after = image_sources(page)
    assert all(a != b for a, b in zip(before, after, strict=True))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-economy.png"
    page.set_viewport_size({"width": 1500, "height": 1900})  # the panels scroll inside the page: show all
    page.get_by_text("Gini, post-tax income").wait_for()
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000

    page.get_by_role("tab", name="Page 1").click()  # the agents page: elections, network, inspector, LLM
    page.get_by_text("No elections in this scenario.").wait_for()
    page.get_by_label("Worker index (0-59)").wait_for()
    assert "Step 3 of 100" in status(page)
    page.wait_for_selector(".v-window__container--is-active", state="detached")  # the page slide is over
    page.screenshot(path=str(ARTIFACTS / "dashboard-agents.png"))
    assert console.errors == []
    page.close()


def test_invalid_input_shows_an_error_and_the_server_keeps_serving(dashboard_url, browser):
    page, console = open_dashboard(browser, dashboard_url)
    type_into(page, "Workers (2-10000)", "-5")
    press(page, "Reset")
    page.get_by_text("workers: '-5' is out of range; allowed: a whole number from 2 to 10000").wait_for()

    other, other_console = open_dashboard(browser, dashboard_url)  # a second visitor is served as usual
    assert "Step 0 of 100 · 100 workers" in status(other)
    other.close()

    type_into(page, "Workers (2-10000)", "50")
    press(page, "Reset")
    page.get_by_text("Step 0 of 100 · 50 workers").wait_for()
    assert page.get_by_text("is out of range").count() == 0
    press(page, "Step")
    page.get_by_text("Time: 1.0").wait_for()
    assert console.errors == [] and other_console.errors == []
    page.close()


def requests_shown(page) -> int:
    return int(re.search(r"Requests: (\d+) ", page.locator("body").inner_text()).group(1))


def test_llm_minds_step_in_the_background_with_progress_shown(dashboard_url, llm_server, browser):
    page, console = open_dashboard(browser, dashboard_url)
    choose(page, "Worker mind", "llm")
    type_into(page, "Workers (2-10000)", "8")
    press(page, "Reset")
    page.get_by_text("LLM so far: Requests: 0").wait_for()
    llm_server.hold_after(3)  # the first step stops part-way, with 3 of its 8 answers, until released
    try:
        press(page, "▶")  # an LLM step takes about 4 s: 8 answers, 2 at a time, 1 s each
        page.wait_for_function("/Requests: 3 /.test(document.body.innerText)", timeout=60_000)  # mid-step
        steps = int(re.search(r"Step (\d+) of", status(page)).group(1))
        page.get_by_role("tab", name="Page 1").click()  # the page stays responsive during the step
        page.get_by_text("Persona:").wait_for(timeout=30_000)
        assert requests_shown(page) == 3 and f"Step {steps} of 100" in status(page)
    finally:
        llm_server.hold_after(None)
    page.get_by_text(f"Step {steps + 1} of 100").wait_for(timeout=60_000)
    press(page, "❚❚")
    page.get_by_role("button", name="▶", exact=True).wait_for()
    page.wait_for_function("(() => { const m = /Requests: (\\d+) /.exec(document.body.innerText);"
                           " return m && Number(m[1]) % 8 === 0; })()", timeout=30_000)  # the last step ended
    page.get_by_text("Last answer:").wait_for()  # the worker inspector shows the exchange with the LLM
    page.screenshot(path=str(ARTIFACTS / "dashboard-llm.png"))
    assert console.errors == []
    page.close()


def readme_dashboard_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README's Dashboard section, in order."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Dashboard\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_a_plugins_mind_is_listed_and_runs_in_the_dashboard(tmp_path, browser):
    """The README's `python run.py dashboard --plugin my_minds.py`, from the folder that holds the file."""
    [plugin] = [code for language, code in readme_dashboard_blocks() if language == "python" and "part_time" in code]
    [command] = [code for language, code in readme_dashboard_blocks() if "--plugin my_minds.py" in code]
    (tmp_path / "my_minds.py").write_text(plugin, encoding="utf-8")
    words = command.split()  # python run.py dashboard --plugin my_minds.py
    assert words[:3] == ["python", "run.py", "dashboard"]
    port, log = free_port(), tmp_path / "dashboard.log"
    process = start_dashboard(port, log, cwd=tmp_path, flags=tuple(words[3:]))
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/", process, log)
        page, console = open_dashboard(browser, f"http://127.0.0.1:{port}/")
        choose(page, "Worker mind", "part_time")
        type_into(page, "Workers (2-10000)", "20")
        press(page, "Reset")
        page.get_by_text("Step 0 of 100 · 20 workers").wait_for()
        press(page, "Step")
        page.get_by_text("Time: 1.0").wait_for()
        page.get_by_role("tab", name="Page 1").click()
        page.get_by_text("part_time minds ask no LLM: Half-time work: 20 hours a week, whatever the taxes").wait_for()
        assert " hours 20.0 " in page.locator("body").inner_text()
        assert console.errors == []
        page.close()
    finally:
        end(process)


def server_process(dashboard: subprocess.Popen) -> int:
    """The Solara server's pid: the child of ``run.py dashboard``."""
    children = Path(f"/proc/{dashboard.pid}/task/{dashboard.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def held(pid: int) -> tuple[int, int, int]:
    """Threads, open files and child processes of ``pid``."""
    tasks = os.listdir(f"/proc/{pid}/task")
    children = sum(len(Path(f"/proc/{pid}/task/{task}/children").read_text().split()) for task in tasks)
    return len(tasks), len(os.listdir(f"/proc/{pid}/fd")), children


def settled(pid: int, most: tuple[int, int, int], timeout: float = 20.0) -> tuple[int, int, int]:
    """What ``pid`` holds once it holds no more than ``most`` (closing is asynchronous), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    now = held(pid)
    while any(a > b for a, b in zip(now, most)) and time.monotonic() < deadline:
        time.sleep(0.5)
        now = held(pid)
    return now


@pytest.mark.parametrize("backend,resets", [("openai", 20), ("embedded", 3)])
def test_reset_closes_the_replaced_models_llm_client(backend, resets, tmp_path, browser):
    """Mesa's Reset replaces the model: the old one's LLM client (its thread, connections, and with the
    embedded backend its share of the model server) is closed, so repeated Resets hold no more than the first;
    sessions share one embedded model server."""
    with FaultServer() as fast:
        env = {**os.environ, "LLM_BASE_URL": fast.base_url, "LLM_MODEL": "fault-model"}
        if backend == "embedded":
            env = {name: value for name, value in env.items() if name not in ("LLM_BASE_URL", "LLM_MODEL")}
        port, log = free_port(), tmp_path / "dashboard.log"
        process = start_dashboard(port, log, env, cwd=tmp_path)
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/", process, log)
            page, console = open_dashboard(browser, f"http://127.0.0.1:{port}/")
            choose(page, "Worker mind", "llm")
            choose(page, "LLM backend", backend)
            type_into(page, "Workers (2-10000)", "2")
            server = server_process(process)
            for reset in range(resets):
                press(page, "Reset")
                page.get_by_text("Time: 0.0").wait_for()
                press(page, "Step")
                page.get_by_text("Time: 1.0").wait_for(timeout=120_000)
                if reset == 0:
                    first = held(server)
            now = settled(server, first)
            assert all(a <= b for a, b in zip(now, first)), f"threads, files, children: {now}, first {first}"
            if backend == "embedded":  # one embedded model server for the process, shared by a second session
                other, _ = open_dashboard(browser, f"http://127.0.0.1:{port}/")
                choose(other, "Worker mind", "llm")
                choose(other, "LLM backend", backend)
                type_into(other, "Workers (2-10000)", "2")
                press(other, "Reset")
                press(other, "Step")
                other.get_by_text("Time: 1.0").wait_for(timeout=120_000)
                assert held(server)[2] == 1
                other.close()
            assert console.errors == []
            page.close()
        finally:
            end(process)
