"""Executors: where a run's jobs run and where their data lives (``registry`` lists them). The job runner,
which the tool images carry, is here too; this file stays empty, as the images hold it.
"""
