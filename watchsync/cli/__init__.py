"""The command line: ``main`` (the parser, logging, exit codes), ``sync_command``,
``agent_commands`` (watch, status, check), ``output`` (aws-format lines, progress) and
``logs`` (formatters)."""
