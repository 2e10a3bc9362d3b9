"""The experiment report: RUN_DIR/report/report.md and a self-contained report.html, with its figures.

    loading     what the report reads, through the run directory (`load_run` -> `RunData`)
    arms        which eval label is which arm (base, decode-only, ssd)
    sections    the sections, from RunData to a document and the metrics it shows
    rendering   the document as Markdown and as HTML
    plots       the figures (PNG bytes)
    tracking    the same numbers on wandb
    formatting  how a pass@k estimate or a paired difference with its CI is written
    writer      `render_report`: all of the above, written under RUN_DIR/report
"""
from .writer import render_report

__all__ = ["render_report"]
