"""watchsync: keep a local folder and an S3 bucket in sync.

The packages are the layers, and imports only point down (checked by import-linter, see
``pyproject.toml``)::

    cli      argv -> run: commands, output lines, progress, logging, exit codes
    agent    the watch agent as rooms: small synchronous objects; only the folder owns threads
    engine   the one executor: carries out plans; its upload and delete sides
    s3       the only code that imports boto3/botocore/awscrt: client, transfers, listings
    fs       the local side: walk, temporary names, the watcher and its debouncer
    state    SQLite: what was last synced, the journal, status
    core     pure values and decisions: model, plan, filters, errors
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
