"""The experiment report (report/report.md, report/report.html) and its figures."""
