"""Every UI the stack serves opens in a browser as a page, not an error page: serving's OpenAPI
page lists /score (it said "Failed to load API definition" while /docs.json answered 500),
MLflow's UI lists the experiment, the Evidently UI draws the fraudlab dashboard, status first.

Each page is rendered by headless Chromium (Debian's `chromium` package) with a virtual-time
budget, so its JavaScript has run and fetched its data: the rendered DOM is checked, and a
screenshot of what a person sees is saved under the stack's home (`<home>/ui-pages/*.png`).
Without `chromium` on PATH the page tests are skipped, with the reason; nothing is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable

import httpx
import pytest

from monitoring import workspace
from tests.integration.test_evidently_ui import shifted_psi_snapshot, wait_for_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
RENDER_BUDGET_MS = 10_000  # virtual time for the page's scripts and requests to settle
MONITOR, OTHER = "ui-pages", "ui-pages-other"
PANEL = f"{MONITOR}: PSI of x"

Render = Callable[[str, str], str]


# A test never installs anything: without a browser the page tests are skipped, and pytest's
# summary (-ra) prints why.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not on PATH: the UI pages cannot be opened headless (on Debian:"
    " `apt-get install -y chromium`)",
)


@pytest.fixture(scope="module")
def render(stack, tmp_path_factory) -> Render:
    """``render(name, url)``: the DOM Chromium rendered, after saving ``<home>/ui-pages/name.png``."""
    assert CHROMIUM is not None
    shots = stack.settings.home / "ui-pages"
    shots.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    browser = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
    ]

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*browser, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"chromium {args}: {done.stderr[-2000:]}"
        return done

    def page(name: str, url: str) -> str:
        png = shots / f"{name}.png"
        run(f"--screenshot={png}", url)
        assert png.stat().st_size > 10_000, f"{png}: an empty screenshot"
        dom = run("--dump-dom", url).stdout
        (shots / f"{name}.html").write_text(dom)
        print(f"\n{url} → {png}")
        return dom

    return page


def test_the_openapi_definition_answers_and_documents_score(stack) -> None:
    response = httpx.get(f"{stack.url}/docs.json", timeout=10)
    assert response.status_code == 200, response.text[:500]
    operation = response.json()["paths"]["/score"]["post"]
    assert "requestBody" in operation


@needs_chromium
def test_servings_openapi_page_lists_the_score_operation(stack, render: Render) -> None:
    dom = render("serving-openapi", f"{stack.url}/")
    assert "Failed to load API definition" not in dom
    assert 'data-path="/score"' in dom  # Swagger UI drew the operation from /docs.json
    assert 'data-path="/reload"' in dom


@needs_chromium
def test_mlflows_ui_lists_the_experiment(stack, render: Render) -> None:
    dom = render("mlflow", f"{stack.settings.tracking_uri}/")
    assert "Unable to display MLflow UI" not in dom  # its page when the UI files are missing
    assert re.search(rf">\s*{re.escape(stack.settings.experiment)}\s*<", dom), (
        "MLflow's home page does not list the experiment"
    )


@needs_chromium
def test_the_evidently_dashboard_draws_status_panels_before_the_details(
    stack, render: Render
) -> None:
    snapshot = shifted_psi_snapshot()
    for monitor in (MONITOR, OTHER):  # two monitors: both statuses lead, then both details
        run_id = workspace.add_snapshot(
            stack.settings,
            snapshot,
            monitor=monitor,
            name=f"{monitor} 1",
            checks={"x": "alert"},
            panels=[
                workspace.line_panel(
                    f"{monitor}: PSI of x", [workspace.series("ValueDrift", column="x")]
                )
            ],
        )
    base = stack.settings.evidently_base_url
    project, _ = wait_for_run(base, run_id)

    dom = render("evidently-dashboard", f"{base}/projects/{project['id']}")
    assert "Unexpected Application Error" not in dom
    assert "This dashboard is currently empty" not in dom
    status = dom.index(f"{MONITOR}: checks by verdict, per run")
    latest = dom.index(f"{MONITOR}: checks at alert / warn (latest run)")
    assert status < latest < dom.index(PANEL)
    # every monitor's status comes before any monitor's details
    statuses = [m.start() for m in re.finditer(r"by verdict, per run<", dom)]
    details = [m.start() for m in re.finditer(r"\(latest run\)<", dom)]
    assert len(statuses) >= 2 and len(details) >= 2
    assert max(statuses) < min(details)
    assert dom.index(f"{OTHER}: checks by verdict, per run") < latest
