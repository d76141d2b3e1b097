"""What a report says and how (docs/protocol.md §8): one number format for mean ± stderr,
a single seed without ± in every table, one censoring footnote, "Settings" limited to the
settings the runs use, no literal Markdown in HTML headings, and every run of the store
shown: the runs of no study under a name a user knows ("Runs of `groklab run`")."""

import re

from fake_runs import curve, spec, write

from groklab.report import write_report


def tables(md: str) -> list[str]:
    """The body rows of every Markdown table of ``md``."""
    return [line for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| task |")
            and not line.startswith("| configuration |")]


def test_a_single_seed_shows_no_plus_minus_in_any_table(tmp_path):
    write(tmp_path, [(spec(), curve([0.2, 0.995, 1.0])), (spec("x_minus_y"), curve([0.3]))])
    md = write_report(tmp_path).markdown.read_text()
    rows = tables(md)
    assert len(rows) >= 14 and not any("±" in row for row in rows)
    assert "| x_plus_y | 1.000 |" in md  # final val acc: the value alone, three decimals


def test_mean_and_stderr_share_the_metric_format(tmp_path):
    write(tmp_path, [(spec(seed=0), curve([0.2, 0.5])), (spec(seed=1), curve([0.3, 0.6]))])
    md = write_report(tmp_path).markdown.read_text()
    cells = [c.strip() for row in tables(md) for c in row.strip("|").split("|")[1:]]
    pairs = [c.rstrip("\\*").split(" ± ") for c in cells if "±" in c]
    assert pairs
    for mean, se in pairs:  # the same number of decimals on both sides
        assert len(mean.partition(".")[2]) == len(se.partition(".")[2]), (mean, se)
    loss = md.split("**Final validation loss**")[1].split("\n\n")[1]
    assert "| x_plus_y | 1.450 ± 0.050 |" in loss  # 2 - acc: 1.5 and 1.4


def test_one_censoring_footnote_for_every_starred_table(tmp_path):
    write(tmp_path, [(spec(seed=0), curve([0.2, 0.5])), (spec(seed=1), curve([0.3, 0.995]))])
    md = write_report(tmp_path).markdown.read_text()
    starred = [t for t in md.split("**")[1::2]
               if "\\*" in md.split(f"**{t}**")[1].split("**")[0].split("\n\n")[1]]
    assert len(starred) == 2  # steps to 99 % and to held 99 % (both runs memorised)
    assert md.count("In a starred cell") == 1 and md.count("Some runs never") == 0
    note = next(line for line in md.splitlines() if "In a starred cell" in line)
    assert "steps to 99 % validation accuracy: x_plus_y / baseline 1 of 2" in note
    assert "steps to held 99 % validation accuracy: x_plus_y / baseline 1 of 2" in note
    assert "(above" not in note and "train accuracy" not in note


def test_settings_list_only_settings_the_runs_use(tmp_path):
    write(tmp_path, [(spec("permutation", k=3, seed=s), curve([0.5])) for s in (0, 1)])
    md = write_report(tmp_path).markdown.read_text()
    settings = md.split("### Settings")[1]
    assert "`k = 3`" in settings and "`d_model = 16`" in settings
    for unused in ("`p =", "`d_hidden", "`muon_", "`filter_alpha", "`corpus", "`momentum"):
        assert unused not in settings, unused


def test_runs_of_no_study_are_reported_beside_the_studies(tmp_path):
    studied = write(tmp_path, [(spec(seed=0), curve([0.5]))], study=("mine", {"seeds": [0]}))
    write(tmp_path, [(spec(seed=7), curve([0.7]))])  # a `groklab run` into the same folder
    files = write_report(tmp_path)
    md = files.markdown.read_text()
    assert "## Study `mine`" in md and "## Runs of `groklab run` (in no study)" in md
    assert studied and md.count("1 finished run(s).") == 2
    page = files.html.read_text()
    headings = re.findall(r"<h\d>(.*?)</h\d>", page)
    assert "Runs of <code>groklab run</code> (in no study)" in headings
    assert not any("`" in h or "**" in h for h in headings)
