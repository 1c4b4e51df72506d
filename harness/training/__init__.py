"""The one path that trains and scores a student run, shared by the search, the confirmation and the
bench: what every run of a process shares (`Context`), the working folder (`Workspace`), a distilled
run and its scratch twin, per-epoch validation, where a run's time goes, and Ctrl-C.

Imports the base modules, `distill`, `data`, `teacher` and `deploy`.
"""
