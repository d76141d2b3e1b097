"""Reports read only the store: tables (mean ± stderr), figures, report.md and report.html."""

from groklab.report.build import ReportFiles, load_studies, summary_table, write_report
from groklab.report.data import StudyData
from groklab.report.tables import censored_note, settings_note, summarize, wide

__all__ = ["ReportFiles", "StudyData", "censored_note", "load_studies",
           "settings_note", "summarize", "summary_table", "wide", "write_report"]
