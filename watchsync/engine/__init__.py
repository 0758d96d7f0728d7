"""The one executor of both commands (``executor``): it carries out the planner's actions,
with its upload side (``sender``) and delete side (``deleter``), each built from its own
collaborators (the transfer, the ``local_files``, where work is ``reporting``ed, what the
server takes); how it acts per command is a ``policy`` preset; deletes wait in a
``spool``."""
