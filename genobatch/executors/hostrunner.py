"""Starts the job runner on the host: ``python -S hostrunner.py TASKS.json`` (``runner.HOST_RUNNER_ARGV``).

Without ``-S`` Python spends about as long setting up site-packages (an editable install adds a meta-path
finder) as the runner spends on its task when the task is trivial. The runner needs only the standard library
and this package, so this file puts the package's root first on the path itself. It stays tiny because
Python compiles a file it runs directly on every start (the modules it imports come from their cached bytecode).
"""

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from genobatch.executors.runner import main  # noqa: E402 - after the path is set

sys.exit(main())
