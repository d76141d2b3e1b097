"""report.html in a real browser: Debian's headless Chromium opens a 2-study report with a
check script injected first in its <head> (``CHECK``), lets the page's scripts run
(``--virtual-time-budget``) and dumps the DOM, where the script has left what it found:
console errors and uncaught exceptions (none allowed), resources fetched (none: the page is
self-contained), every interactive figure's traces and drawn lines, a legend entry clicked
(its configuration's traces hidden, the others drawn) and a hover label naming run id, label,
seed, step and value. A second run saves a screenshot of the same state; with
GROKLAB_SCREENSHOT=PATH set it is written there too (docs/figures/report-interactive.png).

Without Chromium (.ci/run installs Debian's `chromium` where it can) the tests skip and say
so; they never pass without a browser."""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fake_runs import spec, write
from PIL import Image

from groklab.records import EvalRow
from groklab.report import write_report
from groklab.spec import RunSpec

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EVALS, EVERY = 150, 10  # 1,500 steps, evaluated every 10
WIDTH = 1280

CHECK = r"""
window.__errors = [];
(function () {
  const record = (text) => window.__errors.push(text);
  const original = console.error;
  console.error = function (...args) {
    record("console.error: " + args.map(String).join(" "));
    return original.apply(console, args);
  };
  window.addEventListener("error", (e) => record("error: " + (e.message ||
      (e.target && (e.target.src || e.target.href)) || "a resource failed")), true);
  window.addEventListener("unhandledrejection", (e) => record("rejection: " + e.reason));
  const wait = (ms) => new Promise((done) => setTimeout(done, ms));
  const lines = (gd) => gd.querySelectorAll("g.trace.scatter path.js-line").length;

  async function check(out) {
    Object.assign(out, {figures: [], toggled: null, hover: null});
    const plots = [...document.querySelectorAll(".plotly-graph-div")];
    for (const gd of plots) {
      out.figures.push({id: gd.id, traces: (gd.data || []).length, drawn: lines(gd),
        points: (gd._fullData || []).reduce((n, t) => n + (t._length || 0), 0),
        legend: gd.querySelectorAll(".legend .traces").length});
    }
    // the first figure of several panels (else the first): click its first legend entry
    const gd = plots.find((p) => p.layout && p.layout.xaxis2) || plots[0];
    if (!gd) return;
    const figure = gd.closest("figure").getBoundingClientRect();
    out.shown = {top: figure.top + window.scrollY, bottom: figure.bottom + window.scrollY,
                 left: figure.left, right: figure.right};
    const entry = gd.querySelector(".legend .traces .legendtoggle");
    const group = entry.parentNode.__data__[0].trace.legendgroup;
    const box = entry.getBoundingClientRect();
    const at = {bubbles: true, cancelable: true, view: window, button: 0, buttons: 1,
                clientX: box.x + box.width / 2, clientY: box.y + box.height / 2};
    entry.dispatchEvent(new PointerEvent("pointerdown", at));
    entry.dispatchEvent(new MouseEvent("mousedown", at));
    entry.dispatchEvent(new PointerEvent("pointerup", at));
    entry.dispatchEvent(new MouseEvent("mouseup", at));
    entry.dispatchEvent(new MouseEvent("click", at));
    await wait(1000);  // past plotly's double-click delay
    out.toggled = {figure: gd.id, group: group, drawn: lines(gd),
      hidden: gd.data.map((t, i) => [i, t]).filter(([, t]) => t.visible === "legendonly")
        .map(([i]) => i),
      group_traces: gd.data.map((t, i) => [i, t]).filter(([, t]) => t.legendgroup === group)
        .map(([i]) => i)};
    // hover the solid line of a run of another configuration on the first panel, 43 % along
    const run = gd.data.findIndex((t) => t.yaxis === gd.data[0].yaxis &&
      t.legendgroup !== group && t.hovertemplate.startsWith("run ") && t.line.dash === "solid");
    if (run < 0) return;  // one configuration only: no hover
    const point = Math.floor(gd._fullData[run]._length * 0.43);
    window.Plotly.Fx.hover(gd, [{curveNumber: run, pointNumber: point}],
                           gd.data[run].xaxis + gd.data[run].yaxis);
    await wait(300);
    out.hover = {trace: run, point: point,
      text: [...gd.querySelectorAll(".hoverlayer .hovertext")].map((n) => n.textContent)};
  }

  window.addEventListener("load", async () => {
    const out = {};
    try {
      await wait(200);
      await check(out);
    } catch (e) {
      record("check: " + e);
    }
    out.errors = window.__errors;
    out.resources = performance.getEntriesByType("resource").map((r) => r.name);
    const pre = document.createElement("pre");
    pre.id = "groklab-check";
    pre.hidden = true;
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = os.environ.get("GROKLAB_CHROMIUM") or next(
        (b for b in map(shutil.which, BROWSERS) if b), None)
    if not found:
        pytest.skip("headless Chromium not found (none of " + ", ".join(BROWSERS) + " on PATH, "
                    "GROKLAB_CHROMIUM unset): install Debian's `chromium` (.ci/run does) to "
                    "test report.html in a browser")
    return found


def browse(chromium: str, page: Path, profile: Path, *extra: str,
           height: int = 800) -> subprocess.CompletedProcess:
    """Chromium, headless, on ``page`` in a window ``WIDTH`` wide; scripts run for up to
    15 s of virtual time. (A screenshot shows the top of the page: headless Chromium
    captures a scrolled page blank, so a figure far down needs a window that tall.)"""
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{height}", "--virtual-time-budget=15000", *extra,
            page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def checked(chromium: str, page: Path, tmp_path: Path) -> dict:
    """What ``CHECK`` found on ``page`` (a copy with the script first in its head)."""
    copy = page.with_name(page.stem + "-checked.html")
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("<head>", f"<head><script>{CHECK}</script>", 1),
                    encoding="utf-8")
    proc = browse(chromium, copy, tmp_path / "profile", "--dump-dom")
    found = re.search(r'<pre id="groklab-check" hidden="">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the check script left no result; chromium said:\n{proc.stderr[-3000:]}"
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&quot;", '"').replace("&amp;", "&"))


def grokking(seed: int, memorise: float, grok: float) -> list[EvalRow]:
    """A curve that looks like grokking: train accuracy rises near step ``memorise``,
    validation accuracy near ``grok`` (both a little later for higher seeds), a little noise
    while it rises; losses follow."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, EVALS + 1):
        step = i * EVERY
        shift = 1 + 0.08 * (seed - 1)
        train = 1 / (1 + math.exp(-(step - memorise * shift) / 40))
        val = 1 / (1 + math.exp(-(step - grok * shift) / 70))
        val = min(1.0, max(0.0, val + 0.1 * val * (1 - val) * rng.normal()))
        rows.append(EvalRow(step, 4.6 * (1 - train) + 0.002, train,
                            4.6 * (1 - val) + 0.4 * train * (1 - val) + 0.003, val))
    return rows


def two_study_store(root: Path) -> dict[str, list[tuple[RunSpec, list[EvalRow]]]]:
    """Study `rates` (baseline and layerwise, 3 seeds, x_plus_y) and study `fraction` (two
    training fractions, 3 seeds, x_minus_y): its runs by study."""
    rates = [(spec(lr_name=name, seed=s, steps=EVALS * EVERY, lr=lr),
              grokking(s, 200, grok)) for name, lr, grok in
             (("baseline", (1e-3,) * 3, 1100), ("layerwise", (8e-4, 2e-3, 3e-3), 650))
             for s in range(3)]
    fraction = [(spec("x_minus_y", lr_name=f"α={a}", seed=s, steps=EVALS * EVERY,
                      train_fraction=a), grokking(s, 150 + 200 * a, grok))
                for a, grok in ((0.3, 1300), (0.5, 800)) for s in range(3)]
    write(root, rates, study=("rates", {"description": "Baseline against layer-wise rates."}))
    write(root, fraction, study=("fraction", {"description": "Two training fractions."}))
    return {"rates": rates, "fraction": fraction}


def test_the_report_renders_in_chromium(chromium, tmp_path):
    studies = two_study_store(tmp_path)
    page = write_report(tmp_path).html
    found = checked(chromium, page, tmp_path)
    assert found["errors"] == []
    assert found["resources"] == []  # nothing fetched: plotly.js and images are inline
    # per study (2 configurations, one task): the grid figure (a trace per run and per
    # configuration's mean) and the task figure (2 panels × train and validation of each)
    want = []
    for runs in studies.values():
        n = len(runs) + 2
        want += [(n, n * EVALS), (4 * n, 4 * n * EVALS)]
    assert [(f["traces"], f["points"]) for f in found["figures"]] == want
    for f in found["figures"]:
        assert f["drawn"] == f["traces"] and f["legend"] == 2, f  # every line drawn

    toggled = found["toggled"]  # baseline's entry in the first task figure, clicked
    assert toggled["figure"] == found["figures"][1]["id"] and toggled["group"] == "baseline"
    assert toggled["hidden"] == toggled["group_traces"] and len(toggled["hidden"]) == 16
    assert toggled["drawn"] == found["figures"][1]["traces"] - 16  # the others stay drawn

    (text,) = found["hover"]["text"]  # the label's lines, joined
    ((s, rows),) = [(s, c) for s, c in studies["rates"] if text.startswith(f"run {s.run_id}")]
    hover = re.fullmatch(rf"run {s.run_id}(.+)seed (\d+)step (\d+)validation loss: (\S+)",
                         text)
    assert hover, text
    label, seed, step, value = hover.groups()
    assert (label, int(seed)) == (s.label, s.seed) and label == "layerwise"
    row = rows[found["hover"]["point"]]
    assert int(step) == row.step and float(value) == pytest.approx(row.val_loss, rel=1e-3)

    shown = found["shown"]  # the figure on the page, in CSS pixels (no scaling here)
    shot = tmp_path / "page.png"
    proc = browse(chromium, page.with_name(page.stem + "-checked.html"), tmp_path / "profile",
                  f"--screenshot={shot}", height=math.ceil(shown["bottom"]) + 40)
    assert shot.is_file(), proc.stderr[-3000:]
    with Image.open(shot) as img:
        assert img.format == "PNG" and img.size == (WIDTH, math.ceil(shown["bottom"]) + 40)
        figure = img.convert("RGB").crop((0, int(shown["top"]) - 16, WIDTH,
                                          math.ceil(shown["bottom"]) + 8))
    pixels = np.asarray(figure).reshape(-1, 3).astype(int)
    assert len({tuple(c) for c in pixels[::5]}) > 200  # not blank: lines, text, a label
    orange = np.all(np.abs(pixels - (255, 127, 14)) < 10, axis=1)  # layerwise, tab10
    blue = np.all(np.abs(pixels - (31, 119, 180)) < 10, axis=1)  # baseline, hidden
    assert orange.sum() > 2000 and blue.sum() < orange.sum() / 20
    out = tmp_path / "report-interactive.png"
    figure.save(out, optimize=True)
    if os.environ.get("GROKLAB_SCREENSHOT"):
        shutil.copyfile(out, os.environ["GROKLAB_SCREENSHOT"])


def test_the_check_reports_console_errors(chromium, tmp_path):
    """The check is not vacuous: a page that logs an error and throws fails it."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><script>"
                    "console.error('boom'); null.x;</script></body></html>")
    found = checked(chromium, page, tmp_path)
    assert found["figures"] == [] and len(found["errors"]) == 2
    assert found["errors"][0] == "console.error: boom" and "null" in found["errors"][1]
