"""report.html's interactive figures (report/interactive.py, report/html.py): every run's curve
as it is stored (steps and values), hover text naming run, label and seed, one legend entry
per configuration, axis buttons; plotly.js inline once, the PNG kept for readers without
scripts, report.md unchanged. tests/test_report_html_browser.py renders the page in Chromium."""

import base64
import json
import re

import numpy as np
from fake_runs import curve, spec, write

from groklab.records import EvalRow
from groklab.report import load_studies, write_report
from groklab.report.figures import colors
from groklab.report.interactive import metrics_plot, task_plot
from groklab.report.measures import generic_metrics

PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")


def decode(array: dict) -> np.ndarray:
    """A plotly typed array (``{"dtype", "bdata"}``) as numpy."""
    return np.frombuffer(base64.b64decode(array["bdata"]), dtype="<" + array["dtype"])


def xs(trace: dict) -> np.ndarray:
    n = len(decode(trace["y"]))
    if "x" in trace:
        return decode(trace["x"])
    return trace["x0"] + trace["dx"] * np.arange(n)


def two_studies(root):
    """Study `alpha` (2 configurations × 2 seeds, x_plus_y) and `beta` (1 × 3, x_minus_y,
    one run evaluated at uneven steps), plus a run in no study."""
    alpha = [(spec(lr_name=name, seed=s, lr=rate), curve([0.1 * s + k / 10 for k in range(8)]))
             for name, rate in (("baseline", (1e-3,) * 3), ("fast", (3e-3,) * 3)) for s in (0, 1)]
    uneven = [EvalRow(step, 1.0 / step, 1.0, 2.0 / step, step / 100) for step in (5, 10, 40, 90)]
    beta = [(spec("x_minus_y", lr_name="lw", seed=s), curve([0.2, 0.6, 0.95 + s / 100]))
            for s in (0, 1)] + [(spec("x_minus_y", lr_name="lw", seed=2), uneven)]
    write(root, alpha, study=("alpha", {}))
    write(root, beta, study=("beta", {}))
    write(root, [(spec(lr_name="loose", seed=7), curve([0.3, 0.9]))])
    return alpha, beta


def test_every_run_is_drawn_as_stored_with_its_hover_text(tmp_path):
    alpha, beta = two_studies(tmp_path)
    studies = {s.name: s for s in load_studies(tmp_path)}
    for name, runs in (("alpha", alpha), ("beta", beta)):
        study = studies[name]
        palette = colors(list(dict.fromkeys(study.finished["config"])))
        fig = task_plot(study.curves, name, palette)
        json.dumps(fig)  # plain JSON: what the page embeds
        traces = fig["data"]
        by_run = {re.match(r"run (\w+)<br>", t["hovertemplate"]).group(1): t
                  for t in traces if t["hovertemplate"].startswith("run ")}
        # 2 panels (loss, accuracy) × 2 lines (train, validation): 4 traces per run
        assert len(by_run) == len(runs) and len(traces) == 4 * (len(runs) + len(palette))
        for s, rows in runs:
            mine = [t for t in traces if t["hovertemplate"].startswith(f"run {s.run_id}<br>")]
            assert len(mine) == 4
            for t in mine:
                assert f"<br>{s.label}<br>seed {s.seed}<br>step %{{x}}<br>" in t["hovertemplate"]
                assert t["legendgroup"] == s.label and t["showlegend"] is False
                assert list(xs(t)) == [r.step for r in rows]
            values = {t["hovertemplate"].split("<br>")[4].split(":")[0]: decode(t["y"])
                      for t in mine}
            for column, label in (("train_loss", "train loss"), ("val_acc",
                                                                 "validation accuracy")):
                want = np.array([getattr(r, column) for r in rows], dtype=np.float32)
                assert np.array_equal(values[label], want), (s.run_id, column)
        legend = [t["name"] for t in traces if t["showlegend"]]
        assert legend == list(palette)  # one entry per configuration, in study order
        for t in traces:  # every trace toggles with its configuration's entry
            assert t["legendgroup"] == t["name"] and t["line"]["color"].startswith("#")
    uneven = [t for t in task_plot(studies["beta"].curves, "b", colors(["lw"]))["data"]
              if "seed 2<br>" in t["hovertemplate"]]
    assert all(list(decode(t["x"])) == [5, 10, 40, 90] for t in uneven)  # no x0/dx here


def test_the_thick_line_is_the_mean_over_seeds(tmp_path):
    alpha, _ = two_studies(tmp_path)
    study = next(s for s in load_studies(tmp_path) if s.name == "alpha")
    fig = task_plot(study.curves, "alpha", colors(["baseline", "fast"]))
    means = [t for t in fig["data"] if "mean of" in t["hovertemplate"]]
    assert len(means) == 2 * 2 * 2  # configurations × panels × lines
    val = next(t for t in means if t["name"] == "fast" and "validation accuracy" in
               t["hovertemplate"])
    rows = [c for s, c in alpha if s.lr_name == "fast"]
    want = np.mean([[r.val_acc for r in c] for c in rows], axis=0).astype(np.float32)
    assert np.allclose(decode(val["y"]), want, atol=1e-7)
    assert list(decode(val["customdata"])) == [2] * len(want)  # runs per mean
    assert val["line"]["width"] > max(t["line"]["width"] for t in fig["data"]
                                      if t["hovertemplate"].startswith("run "))


def test_axis_buttons_switch_every_panel(tmp_path):
    two_studies(tmp_path)
    study = next(s for s in load_studies(tmp_path) if s.name == "alpha")
    layout = task_plot(study.curves, "alpha", colors(["baseline", "fast"]))["layout"]
    assert (layout["xaxis"]["type"], layout["xaxis2"]["type"]) == ("log", "log")
    assert (layout["yaxis"]["type"], layout["yaxis2"]["type"]) == ("log", "linear")  # loss, acc
    steps, values = layout["updatemenus"]
    args = {b["label"]: b["args"][0] for menu in (steps, values) for b in menu["buttons"]}
    assert args["step: linear"] == {"xaxis.type": "linear", "xaxis.autorange": True,
                                    "xaxis2.type": "linear", "xaxis2.autorange": True}
    assert args["step: log"]["xaxis2.type"] == "log" and steps["active"] == 0
    assert args["values: log"]["yaxis2.type"] == "log"
    assert args["values: linear"]["yaxis.type"] == "linear"
    drawn = args["values: as drawn"]
    assert (drawn["yaxis.type"], drawn["yaxis2.type"]) == ("log", "linear")


def test_labels_are_text_in_hover_and_legend(tmp_path):
    write(tmp_path, [(spec(lr_name="a<b>%{y}"), curve([0.5, 1.0]))])
    (study,) = load_studies(tmp_path)
    fig = task_plot(study.curves, "t <i>", colors(["a<b>%{y}"]))
    hover = fig["data"][0]["hovertemplate"]
    assert "a&lt;b&gt;%&#123;y}" in hover and "<b>" not in hover
    assert hover.count("%{") == 2  # step and value: the label's own is disarmed
    assert fig["layout"]["title"]["text"] == "t &lt;i&gt;"


def test_the_page_carries_plotly_once_and_keeps_the_pngs(tmp_path):
    two_studies(tmp_path)
    files = write_report(tmp_path)
    page = files.html.read_text()
    assert len(PLOTLY_BANNER.findall(page)) == 1  # plotly.js inline, once
    assert "<script src=" not in page and "<link" not in page  # nothing to fetch
    # three studies (alpha, beta, the loose run): a grid figure and a task figure each
    plots = re.findall(r'Plotly\.newPlot\(\s*"(figure-\d+)"', page)  # stable element ids
    assert len(plots) == 6 and len(set(plots)) == 6
    assert page.index("plotly.js v") < page.index("Plotly.newPlot(")
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert len(pngs) == 6
    for png in pngs:  # each figure's PNG, for readers without scripts
        data = base64.b64encode(png.read_bytes()).decode()
        assert data in page
    assert page.count("<noscript><img ") == 6
    assert page.count("hover for run id, label, seed, step and value") == 6
    md = files.markdown.read_text()
    assert "Plotly" not in md and "<script" not in md and md.count("](figures/") == 6


def test_a_page_without_curves_carries_no_plotly(tmp_path):
    write(tmp_path, [(spec(), None)])  # a run that never finished: no figures
    page = write_report(tmp_path).html.read_text()
    assert "Plotly" not in page and "<figure" not in page


def test_named_metrics_get_an_interactive_twin(tmp_path):
    runs = write(tmp_path, [(spec(seed=s), curve([0.5, 1.0], named={"sigma_max_E": 2.0 + s}))
                            for s in (0, 1)])
    files = write_report(tmp_path)
    page = files.html.read_text()
    assert len(re.findall(r"Plotly\.newPlot\(", page)) == 3  # grid, task, named metrics
    assert "groklab_run-x_plus_y-metrics.png" in files.markdown.read_text()
    (study,) = load_studies(tmp_path)
    fig = metrics_plot(generic_metrics(study.metrics), "m", colors(["baseline"]))
    for s in runs:
        (trace,) = [t for t in fig["data"] if t["hovertemplate"].startswith(f"run {s.run_id}")]
        assert list(decode(trace["y"])) == [2.0 + s.seed] * 2 and list(xs(trace)) == [10, 20]
        assert "sigma_max_E: %{y" in trace["hovertemplate"]
