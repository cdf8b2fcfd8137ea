"""The worker: registers the templates under templates/ and runs their steps until Ctrl-C.

    .venv/bin/python worker.py

It connects to the database of config/tasker (an SQLite file, ./tasker.db), so the `tasker`
CLI run from this directory sees the same tasks.
"""

from pathlib import Path

import tasker_core

HERE = Path(__file__).resolve().parent
QUEUES = ["{{namespace}}"]


def main() -> None:
    client = tasker_core.connect()
    for template in client.register_templates(str(HERE / "templates")):
        print(f"registered {template.namespace}/{template.name}@{template.version}")
    print(f"worker serving {', '.join(QUEUES)} (Ctrl-C to stop)", flush=True)
    # Handlers are found by the class path in each step's `callable` (handlers.….ClassName).
    tasker_core.Worker(client, queues=QUEUES).run()


if __name__ == "__main__":
    main()
