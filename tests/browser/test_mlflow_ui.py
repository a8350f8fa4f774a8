"""The MLflow UI in a real browser: what a researcher sees after `zppo train` and `zppo sweep`.

Two real tiny runs (grpo, zppo) and a 2-trial buffer sweep log to the default store of a fresh directory
(./mlruns, as `make tiny` would); `zppo ui` is started from the venv's console script with a PATH that does not
hold the venv (no activation), and the page it prints is opened in Debian's headless Chromium through Playwright
(`executable_path`, requests outside 127.0.0.1 refused). Checked: the runs list shows the runs by name (with their
dataset and source), the sweep parent expands to its nested trials, the compare view of the two runs shows the
params diff and a metric, a graduation plot renders as an image, the graduation table and the sweep's trials table
render as tables, and the compare view of two trials shows their graduation plots side by side. Screenshots (and
the timings) go to test-artifacts/browser/ (git-ignored; CI keeps the folder).

Needs `chromium` (apt; ZPPO_CHROMIUM names another binary) and `playwright` (the dev extra, installed by `make
test`); `.ci/run` installs chromium and sets ZPPO_REQUIRE_BROWSER=1, under which a missing browser fails each test
here (the rest of the suite still runs); elsewhere they skip without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("ZPPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# keeps the "MLflow Assistant" panel (auto-opened on a fresh profile) from covering the page
NO_ASSISTANT = ("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');")
RUN_SETS = ["run.steps=3", "eval.every=3", "eval.suites=[tiny-ood]", "eval.per_level=2", "eval.max_new_tokens=24",
            "zppo.compression=none", "zppo.template=compact"]
SWEEP_SETS = ["run.steps=2", "eval.every=1", "eval.per_level=1", "eval.samples=1", "eval.max_new_tokens=24",
              "run.threads=1", "run.final_eval_per_level=0"]

try:
    import playwright.sync_api  # noqa: F401

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover
    HAVE_PLAYWRIGHT = False

MISSING = None if (HAVE_PLAYWRIGHT and Path(CHROMIUM).is_file()) else (
    f"needs playwright (pip install -e '.[dev]') and {CHROMIUM} (apt-get install chromium); .ci/run installs both")
# CI (.ci/run sets ZPPO_REQUIRE_BROWSER=1): a missing browser fails every test here; elsewhere they skip
REQUIRED = os.environ.get("ZPPO_REQUIRE_BROWSER", "") not in ("", "0")
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=MISSING or "")


@pytest.fixture(scope="module", autouse=True)
def browser_present():
    """Fails (not skips) the module's tests when the browser is required and missing, before anything trains."""
    if MISSING:
        pytest.fail(f"ZPPO_REQUIRE_BROWSER is set but the browser test {MISSING}", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zppo_command() -> list[str]:
    exe = Path(sys.executable).parent / "zppo"  # the console script beside this interpreter
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "zppo_cli.app"]


def _wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"zppo ui exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.25)  # polling for readiness, not timing
    raise RuntimeError("the MLflow server did not answer /health in time")


@pytest.fixture(scope="module")
def world(prepared, test_overrides, tmp_path_factory):
    """Runs and a sweep in ./mlruns of a fresh dir, and `zppo ui` serving it. Yields what the tests look for."""
    from mlflow.tracking import MlflowClient

    from zppo_core.config import load_config
    from zppo_core.train.run import train
    from zppo_cli.app import app

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    root = tmp_path_factory.mktemp("browser")
    proc = None
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlruns/mlflow.db
        try:
            runs = {}
            for method in ("grpo", "zppo"):
                cfg = load_config("tiny", method=method, overrides=test_overrides + RUN_SETS)
                runs[method] = train(cfg, run_dir=root / "runs" / method)
                if proc is None:  # the store exists now: start the UI while the rest trains
                    port = _free_port()
                    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
                    env["PATH"] = "/usr/bin:/bin"  # the venv is not activated
                    proc = subprocess.Popen(_zppo_command() + ["ui", "--port", str(port)], cwd=root, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True)
            timings["two runs"] = time.monotonic() - t0
            t1 = time.monotonic()
            sets = [a for s in test_overrides + SWEEP_SETS for a in ("--set", s)]
            # trials in this process (submitit's debug executor): the same trial code without two interpreter starts
            r = CliRunner().invoke(app, ["sweep", "buffer", "--trials", "2", "--executor", "debug", *sets])
            assert r.exit_code == 0, r.output
            timings["sweep (2 trials)"] = time.monotonic() - t1
            first_line = proc.stdout.readline()
            assert first_line.startswith("MLflow UI on http://127.0.0.1:"), first_line
            view_url = first_line.split()[3]
            base = view_url.split("/#/")[0]
            t2 = time.monotonic()
            _wait_healthy(base, proc)
            timings["server up (after the sweep)"] = time.monotonic() - t2

            client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
            exp = client.get_experiment_by_name("zppo").experiment_id
            sweep_meta = json.loads((root / "runs" / "sweeps" / "buffer-tiny" / "sweep.json").read_text())
            parent = sweep_meta["parent_run_id"]
            trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
            yield {
                "base": base, "view_url": view_url, "exp": exp, "client": client, "timings": timings, "t0": t0,
                "ids": {m: r.mlflow_run_id for m, r in runs.items()},
                "names": {m: client.get_run(r.mlflow_run_id).info.run_name for m, r in runs.items()},
                "parent": parent, "parent_name": client.get_run(parent).info.run_name,
                "trial_names": [t.info.run_name for t in trials], "trial_ids": [t.info.run_id for t in trials],
            }
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)  # our own session: the server and its uvicorn worker
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    timings["total"] = time.monotonic() - t0
    (SHOTS / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))


@pytest.fixture(scope="module")
def page(world):
    from playwright.sync_api import sync_playwright

    t = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
        ctx.add_init_script(NO_ASSISTANT)
        blocked: list[str] = []

        def loopback_only(route):
            host = urllib.parse.urlparse(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        ctx.route("**/*", loopback_only)
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        yield pg
        ctx.close()
        browser.close()
    world["timings"]["browser views"] = time.monotonic() - t


def _goto(page, world, route: str) -> None:
    page.goto("about:blank")  # a hash-only change would keep the previous artifact selected
    page.goto(f"{world['base']}/#/{route}")


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _run_link(page, run_id: str):
    return page.locator(f"a[href$='/runs/{run_id}']")


def test_runs_list_shows_the_runs_by_name(page, world):
    page.goto(world["view_url"])  # the URL `zppo ui` printed
    for method, run_id in world["ids"].items():
        link = _run_link(page, run_id)
        link.wait_for()
        assert link.inner_text() == world["names"][method]
    assert _run_link(page, world["parent"]).inner_text() == world["parent_name"]
    assert "/runs?workflowType=machine_learning" in world["view_url"]
    _shot(page, "01-runs-list")


def test_sweep_parent_lists_its_nested_trials(page, world):
    assert len(world["trial_names"]) == 2
    page.goto(world["view_url"])
    parent_link = _run_link(page, world["parent"])
    parent_link.wait_for()
    for run_id in world["trial_ids"]:
        assert _run_link(page, run_id).count() == 0  # collapsed under the parent
    parent_link.locator("xpath=ancestor::*[@role='gridcell'][1]").locator("button").first.click()
    for run_id, name in zip(world["trial_ids"], world["trial_names"]):
        _run_link(page, run_id).wait_for()
        assert _run_link(page, run_id).inner_text() == name
    _shot(page, "02-sweep-parent-with-trials")


def test_compare_view_shows_the_params_diff_and_a_metric(page, world):
    ids = [world["ids"]["grpo"], world["ids"]["zppo"]]
    q = urllib.parse.quote
    _goto(page, world, f"compare-runs?runs={q(json.dumps(ids))}&experiments={q(json.dumps([world['exp']]))}"
                       "&workflowType=machine_learning")
    page.get_by_role("switch", name="Parameters - Show diff only").click()
    body = page.locator("body")
    row = page.get_by_role("row").filter(has_text="method")
    row.first.wait_for()
    assert "algo.n_new" not in body.inner_text()  # equal in both runs: hidden by "diff only"
    # the metrics grid is virtualised (only rows in view exist): the final tiny-ood score sorts near the top
    metric = page.get_by_role("link", name="eval/tiny-ood/avg", exact=True)
    metric.wait_for()
    assert all(i in urllib.parse.unquote(metric.get_attribute("href")) for i in ids)  # its chart plots both runs
    page.get_by_text("Run details", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    page.set_viewport_size({"width": 1500, "height": 1700})  # params, metrics and artifacts in one shot
    _shot(page, "03-compare-two-runs")
    page.set_viewport_size({"width": 1500, "height": 1100})


def test_graduation_plot_renders_as_an_image(page, world):
    run = world["ids"]["zppo"]
    _goto(page, world, f"experiments/{world['exp']}/runs/{run}/artifacts/graduation/fates_by_bin.png"
                       "?workflowType=machine_learning")
    img = page.locator("img[alt='graduation/fates_by_bin.png']")
    img.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    w, h = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    assert (w, h) == (660, 385)  # the PNG's own size (6 x 3.5 in at 110 dpi)
    _shot(page, "04-graduation-plot")


def test_graduation_and_trials_tables_render_as_tables(page, world):
    run = world["ids"]["zppo"]
    _goto(page, world, f"experiments/{world['exp']}/runs/{run}/artifacts/graduation/table.json"
                       "?workflowType=machine_learning")
    table = page.get_by_role("table")
    table.wait_for()
    headers = [h.inner_text() for h in page.get_by_role("columnheader").all()]
    assert {"question_id", "entry_bin", "fate"} <= set(headers), headers
    assert page.get_by_role("checkbox", name="View as table").is_checked()
    _shot(page, "05-graduation-table")
    _goto(page, world, f"experiments/{world['exp']}/runs/{world['parent']}/artifacts/sweep/trials.json"
                       "?workflowType=machine_learning")
    page.get_by_role("table").wait_for()
    headers = [h.inner_text() for h in page.get_by_role("columnheader").all()]
    assert {"trial", "state", "capacity", "zppo_capacity", "tau"} <= set(headers), headers
    # every cell of the searched config value is filled (a dotted column name would render empty)
    col = headers.index("zppo_capacity")
    cells = [row.get_by_role("cell").nth(col).inner_text() for row in page.get_by_role("row").all()[1:]]
    assert len(cells) == 2 and all(c.strip().isdigit() for c in cells), cells
    _shot(page, "06-sweep-trials-table")


def test_compare_view_previews_two_trials_graduation_plots_side_by_side(page, world):
    ids = world["trial_ids"]
    q = urllib.parse.quote
    _goto(page, world, f"compare-runs?runs={q(json.dumps(ids))}&experiments={q(json.dumps([world['exp']]))}"
                       "&workflowType=machine_learning")
    page.get_by_text("graduation.png", exact=True).first.click()  # a top-level artifact both trials have
    imgs = page.locator("img[alt='graduation.png']")
    imgs.nth(1).wait_for()
    assert imgs.count() == 2
    for i in range(2):
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=imgs.nth(i).element_handle())
    imgs.first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.set_viewport_size({"width": 1500, "height": 1500})
    _shot(page, "07-compare-trials-graduation")
    page.set_viewport_size({"width": 1500, "height": 1100})
