"""The web dashboard (``genobatch serve``): a work directory's runs and its engine's queues, in a browser.

It only reads (run records, traces, the engine's ``state.db`` opened read-only), except cancel/terminate,
which need the token the server was started with. Layer: between the CLI and the pipeline; nothing but
``genobatch.cli`` imports it.
"""
