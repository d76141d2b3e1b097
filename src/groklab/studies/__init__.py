"""Studies: named lists of run specs (TOML files or built-in presets) and their execution."""

from groklab.studies.errors import StudyError
from groklab.studies.execute import run_study
from groklab.studies.presets import get_study, preset, preset_names
from groklab.studies.study import Study, StudyRun, load_file, load_toml

__all__ = ["Study", "StudyError", "StudyRun", "get_study", "load_file", "load_toml", "preset",
           "preset_names", "run_study"]
