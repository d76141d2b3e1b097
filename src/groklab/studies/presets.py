"""The built-in studies: TOML files shipped in ``groklab/studies/presets``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from groklab.engine.limits import MAX_RUNS
from groklab.studies.errors import StudyError
from groklab.studies.study import Study, load_file, load_toml

_PRESETS = resources.files("groklab.studies") / "presets"


def preset_names() -> list[str]:
    """Names of the built-in studies."""
    return sorted(f.name.removesuffix(".toml") for f in _PRESETS.iterdir()
                  if f.name.endswith(".toml"))


def preset(name: str, max_runs: int | None = MAX_RUNS) -> Study:
    """The built-in study ``name`` (``max_runs``: see ``Study``)."""
    if name not in preset_names():
        raise StudyError(name, "study", f"no such study; built-in: {', '.join(preset_names())}")
    text = (_PRESETS / f"{name}.toml").read_text(encoding="utf-8")
    return load_toml(text, f"preset {name}", default_name=name, max_runs=max_runs)


def get_study(name_or_path: str | Path, max_runs: int | None = MAX_RUNS) -> Study:
    """A built-in study by name, or a study file (``.toml``) by path (``max_runs``: see
    ``Study``)."""
    text = str(name_or_path)
    if text in preset_names():
        return preset(text, max_runs)
    if text.endswith(".toml") or Path(text).is_file():
        if not Path(text).is_file():
            raise StudyError(text, "file", "no such file")
        return load_file(text, max_runs)
    raise StudyError(text, "study", f"neither a built-in study ({', '.join(preset_names())}) "
                     "nor a .toml file")
